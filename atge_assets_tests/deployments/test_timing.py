import httpx
import pytest

from atge_assets.deployments.suite import MetricSpec, Suite
from atge_assets.deployments.timing import measure, parse_server_timing
from atge_assets.lib.http import HostNotAllowed, check_url


def test_parse_server_timing():
    h = 'collect;dur=52.5, ai;desc="model call";dur=80, cache;desc=hit, db;dur=bogus, db2;dur="3"'
    assert parse_server_timing(h) == {"collect": 52.5, "ai": 80.0, "db2": 3.0}
    assert parse_server_timing(None) == {}
    assert parse_server_timing("") == {}


@pytest.mark.parametrize("url", [
    "http://169.254.169.254/latest/meta-data",
    "file:///etc/passwd",
    "ftp://atge.vercel.app/x",
    "https://evil.example.com/api",
    "https://user:pw@atge.vercel.app/",
    "http://metadata.google.internal/",
    "http://[fe80::1]/",
])
def test_check_url_refuses(url):
    with pytest.raises(HostNotAllowed):
        check_url(url, ["*.vercel.app", "169.254.169.254", "metadata.google.internal", "fe80::1"])


def test_check_url_allows_patterns():
    assert check_url("https://atge-abc.vercel.app", ["*.vercel.app"])
    assert check_url("http://127.0.0.1:8787/d/x", ["127.0.0.1"])


def test_measure_against_sandbox(sandbox):
    dep = sandbox.state.world.production
    suite = Suite(samples=5, warmup=1, metrics=(
        MetricSpec("ai_analysis", "/api/einstein/analyze", "POST", {"symbol": "BTC"}, phase="ai"),
        MetricSpec("end_to_end", "/api/einstein/analyze", "POST", {"symbol": "BTC"}),
        MetricSpec("missing", "/api/nope"),
    ))
    samples = measure(f"{sandbox.base_url}/d/{dep}", suite)
    assert len(samples) == 15  # warm-ups are not kept
    by = {m: [s for s in samples if s.metric == m] for m in ("ai_analysis", "end_to_end", "missing")}
    assert all(s.ok and s.value_ms > 0 for s in by["ai_analysis"] + by["end_to_end"])
    # The phase is the server's own number, smaller than the wall-clock of the whole request.
    assert all(s.value_ms < s.wall_ms for s in by["ai_analysis"])
    assert all(set(s.phases) == {"collect", "ai", "db"} for s in by["end_to_end"])
    assert all(not s.ok and s.status == 404 and s.value_ms is None for s in by["missing"])


def test_measure_records_timeouts_and_refusals(sandbox):
    dep = sandbox.state.world.production
    slow = Suite(samples=3, warmup=0, metrics=(
        MetricSpec("end_to_end", "/api/einstein/analyze", "POST", {"symbol": "BTC"},
                   timeout_s=0.005),))
    samples = measure(f"{sandbox.base_url}/d/{dep}", slow)
    assert [s.ok for s in samples] == [False] * 3
    assert all("timeout" in s.error for s in samples)
    # A port where nothing listens: refused connections become failed samples, not a crash.
    with httpx.Client() as c:
        refused = measure("http://127.0.0.1:9/d/x", Suite(samples=3, warmup=0, metrics=(
            MetricSpec("health", "/api/health", timeout_s=1),)), client=c)
    assert len(refused) == 3 and all(not s.ok and s.error for s in refused)


def test_phases_of_one_request_are_read_off_one_response():
    """Metrics that are phases of the same request cost one request a sample, not one each; a
    failed response fails every metric read off it."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    hits = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("content-length") or 0))
            hits.append(self.path)
            status = 500 if len(hits) == 3 else 200
            self.send_response(status)
            self.send_header("server-timing", f"collect;dur={len(hits)}, ai;dur={100 + len(hits)}")
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        body = {"symbol": "BTC"}
        suite = Suite(samples=4, warmup=1, metrics=(
            MetricSpec("data_collection", "/analyze", "POST", body, phase="collect"),
            MetricSpec("ai_analysis", "/analyze", "POST", dict(body), phase="ai"),
            MetricSpec("end_to_end", "/analyze", "POST", body),
        ))
        base = f"http://127.0.0.1:{server.server_address[1]}"
        samples = measure(f"{base}/a", suite, reference_url=f"{base}/b")
    finally:
        server.shutdown()
        server.server_close()
    assert len(hits) == 2 * (1 + 4)  # two deployments, one warm-up and four samples each
    assert len(samples) == 3 * 2 * 4
    for seq in range(4):
        for target in ("candidate", "reference"):
            one = [s for s in samples if s.seq == seq and s.target == target]
            assert sorted(s.metric for s in one) == ["ai_analysis", "data_collection", "end_to_end"]
            got = {s.metric: s for s in one}
            assert len({s.wall_ms for s in one}) == 1 and len({s.ok for s in one}) == 1
            if got["end_to_end"].ok:
                assert got["ai_analysis"].value_ms == got["data_collection"].value_ms + 100
                assert got["end_to_end"].value_ms == got["end_to_end"].wall_ms
            else:
                assert all(s.value_ms is None and s.status == 500 for s in one)
    assert sum(not s.ok for s in samples) == 3  # the third request (first sample) failed
