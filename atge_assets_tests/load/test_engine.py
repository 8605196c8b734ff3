"""The load engine against real loopback HTTP servers: counts, caps, errors, aborts, the open
model's queueing, exact merges, the host check and the CLI. No assertion depends on how fast the
machine is: counts and caps are exact, and latencies are compared only where a server-side pause
of 300 ms dwarfs any loopback noise."""

import json
import os
import random
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from atge_assets.lib.http import HostNotAllowed, check_url
from atge_assets.load.capacity import Thresholds, capacity_report
from atge_assets.load.cli import cli_main
from atge_assets.load.engine import run_stage, run_stages
from atge_assets.load.histogram import LatencyHistogram
from atge_assets.load.spec import LoadResult, LoadSpec, merge

LOCAL = ["127.0.0.1"]


class _Scripted(BaseHTTPRequestHandler):
    """Answers 200, except as the server's `plan(n)` says for its n-th request (from 1)."""

    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        # Headers and body go out in two writes: without this, Nagle + delayed ACK add 40 ms each.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, *a):
        pass

    def do_GET(self):
        srv = self.server
        with srv.lock:
            srv.count += 1
            n = srv.count
        status, pause = srv.plan(n)
        if pause:
            threading.Event().wait(pause)
        body = b'{"ok": true}'
        self.send_response(status)
        if srv.close_each:  # an HTTP/1.0-style answer: the body ends when the connection does
            self.send_header("connection", "close")
            self.close_connection = True
        else:
            self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET


@pytest.fixture
def scripted():
    servers = []

    def start(plan=lambda n: (200, 0.0), close_each=False, tls=None):
        srv = ThreadingHTTPServer(("127.0.0.1", 0), _Scripted)
        srv.daemon_threads = True
        srv.plan, srv.count, srv.lock, srv.close_each = plan, 0, threading.Lock(), close_each
        if tls:
            srv.socket = tls.wrap_socket(srv.socket, server_side=True)
        threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(srv)
        scheme = "https" if tls else "http"
        return srv, f"{scheme}://127.0.0.1:{srv.server_address[1]}/api/health"

    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


def _app_url(sandbox, errors=0.0, path="/api/einstein/trade-history"):
    dep = sandbox.state.create(target="preview", errors=errors)
    return f"{sandbox.base_url}/d/{dep.id}{path}"


# -- histogram -----------------------------------------------------------------------------------
def test_histogram_merge_of_encoded_shards_equals_one_histogram_of_all_values():
    rng = random.Random(3)
    values = [rng.lognormvariate(1, 1.5) for _ in range(20_000)] + [0.0001, 5e9]  # clamped ends
    whole, shards = LatencyHistogram(), [LatencyHistogram() for _ in range(3)]
    for i, v in enumerate(values):
        whole.record_ms(v)
        shards[i % 3].record_ms(v)
    merged = LatencyHistogram.merged(LatencyHistogram.decode(s.encode()) for s in shards)
    assert merged == whole and merged.count == len(values)
    pcts = (0, 50, 90, 95, 99, 99.9, 100)
    assert merged.summary_ms(pcts) == whole.summary_ms(pcts)
    # The vectorised summary follows the library's own definitions exactly.
    h = whole._h
    ref = {f"p{p:g}": h.get_value_at_percentile(p) / 1000 for p in pcts if p}
    assert {k: v for k, v in whole.summary_ms(pcts).items() if k in ref} == ref
    assert whole.mean_ms() == pytest.approx(h.get_mean_value() / 1000, rel=1e-12)
    assert whole.max_ms() == h.get_max_value() / 1000
    assert LatencyHistogram().summary_ms()["p99"] is None


def test_result_round_trips_and_merges_exactly():
    def result(values, status):
        h = LatencyHistogram()
        for v in values:
            h.record_ms(v)
        return LoadResult("closed", 2, None, len(values), 1, 1.0, float(len(values)), status, {},
                          None, "duration", h)

    a, b = result([1, 2, 3], {"200": 2, "500": 1}), result([4, 50], {"200": 2})
    a2 = LoadResult.from_dict(json.loads(json.dumps(a.to_dict())))
    assert a2.to_dict() == a.to_dict()
    m = merge([a2, b])
    assert (m.requests, m.errors, m.users, m.shards) == (5, 2, 4, 2)
    assert m.status_counts == {"200": 4, "500": 1} and m.rps == 5.0
    assert m.histogram == LatencyHistogram.merged([a.histogram, b.histogram])
    assert m.max_ms == pytest.approx(50, rel=1e-3)
    with pytest.raises(ValueError):
        merge([a, LoadResult("open", 1, 5.0, 0, 0, 1.0, 0.0, {}, {}, None, "duration",
                             LatencyHistogram())])


# -- the engine against real servers -------------------------------------------------------------
def test_closed_model_stops_at_max_requests(sandbox):
    url = _app_url(sandbox, path="/api/health")
    r = run_stage(LoadSpec(url, users=4, duration_s=20, max_requests=37), allowed_hosts=LOCAL)
    assert (r.requests, r.errors, r.stopped_by, r.aborted) == (37, 0, "max_requests", None)
    assert r.status_counts == {"200": 37} and r.histogram.count == 37
    assert r.duration_s < 20 and r.p50_ms <= r.p95_ms <= r.p99_ms <= r.max_ms


def test_open_model_sends_exactly_what_falls_due(scripted):
    srv, url = scripted()
    r = run_stage(LoadSpec(url, users=4, duration_s=0.5, rate=60), allowed_hosts=LOCAL)
    assert (r.requests, r.stopped_by, srv.count) == (30, "duration", 30)
    capped = run_stage(LoadSpec(url, users=4, duration_s=5, rate=60, max_requests=12),
                       allowed_hosts=LOCAL)
    assert (capped.requests, capped.stopped_by) == (12, "max_requests")
    assert capped.service_histogram.count == 12


def test_errors_are_counted_by_status(sandbox):
    url = _app_url(sandbox, errors=0.5)
    r = run_stage(LoadSpec(url, users=8, duration_s=20, max_requests=200, abort_error_rate=None),
                  allowed_hosts=LOCAL)
    assert r.requests == 200 and set(r.status_counts) == {"200", "500"}
    assert r.errors == r.status_counts["500"] and 50 < r.errors < 150  # binomial(200, 0.5)
    assert r.error_rate == r.errors / 200 and r.aborted is None
    assert r.histogram.count == 200  # failed answers have latencies too


def test_post_body_reaches_the_app(sandbox):
    url = _app_url(sandbox, path="/api/einstein/analyze")
    r = run_stage(LoadSpec(url, users=2, duration_s=20, max_requests=4, method="POST",
                           body={"symbol": "BTC"}), allowed_hosts=LOCAL)
    assert r.status_counts == {"200": 4}


def test_answers_that_end_with_the_connection_and_reconnects(scripted):
    srv, url = scripted(close_each=True)
    r = run_stage(LoadSpec(url, users=3, duration_s=20, max_requests=30), allowed_hosts=LOCAL)
    assert r.status_counts == {"200": 30} and r.errors == 0 and srv.count == 30


def test_https_verifies_certificates(scripted, tmp_path, monkeypatch):
    openssl = shutil.which("openssl") or pytest.skip("no openssl to make a certificate")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    srv, url = scripted(tls=ctx)
    spec = LoadSpec(url, users=1, duration_s=10, max_requests=3, abort_error_rate=None)
    untrusted = run_stage(spec, allowed_hosts=LOCAL)
    assert untrusted.errors == 3 and set(untrusted.error_counts) == {"SSLCertVerificationError"}
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # OpenSSL's default trust store, for this test
    trusted = run_stage(spec, allowed_hosts=LOCAL)
    assert trusted.status_counts == {"200": 3} and srv.count == 3


def test_aborts_when_the_error_rate_spikes_late_in_the_run(scripted):
    # 300 good answers, then only errors: a cumulative rate would take ~300 more to cross 50%.
    srv, url = scripted(lambda n: (200, 0.0) if n <= 300 else (503, 0.0))
    r = run_stage(LoadSpec(url, users=2, duration_s=20, abort_error_rate=0.5, abort_window=40),
                  allowed_hosts=LOCAL)
    assert r.stopped_by == "aborted" and "over the last 40 requests" in r.aborted
    assert 300 + 20 < r.requests <= 300 + 40 + 2
    assert r.status_counts["503"] == r.errors


def test_refused_hosts_raise_before_any_request(scripted):
    srv, url = scripted()
    with pytest.raises(HostNotAllowed):
        run_stage(LoadSpec(url, users=1, duration_s=1), allowed_hosts=["*.vercel.app"])
    for bad in ("http://169.254.169.254/latest/meta-data", "http://metadata.google.internal/",
                "file:///etc/passwd"):
        with pytest.raises(HostNotAllowed):
            run_stage(LoadSpec(bad, users=1, duration_s=1), allowed_hosts=["*"])
    with pytest.raises(ValueError):  # every stage is checked before the first one runs
        run_stages(LoadSpec(url, duration_s=0.2), [1, 2, 0], allowed_hosts=LOCAL)
    assert srv.count == 0


def test_names_are_resolved_once_and_refused_if_they_lead_to_link_local(scripted, monkeypatch):
    srv, url = scripted()
    real = socket.getaddrinfo

    def resolver(host, *args, **kw):
        if host == "rebound.example":  # an allowed name whose DNS points at the metadata service
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("169.254.169.254", 80))]
        if host == "both.example":  # ::1 first, where nothing listens, as "localhost" may be
            return [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("::1", 1, 0, 0)),
                    (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 1))]
        return real(host, *args, **kw)

    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    with pytest.raises(HostNotAllowed, match="link-local"):
        run_stage(LoadSpec("http://rebound.example/", users=1, duration_s=1),
                  allowed_hosts=["*.example"])
    port = srv.server_address[1]
    r = run_stage(LoadSpec(f"http://both.example:{port}/api/health", users=2, duration_s=5,
                           max_requests=6), allowed_hosts=["*.example"])
    assert r.status_counts == {"200": 6} and srv.count == 6


def test_spec_limits():
    for bad in (dict(users=0), dict(users=10**6), dict(duration_s=0), dict(duration_s=1e6),
                dict(rate=-1), dict(ramp_up_s=5, duration_s=1), dict(think_time_s=(2, 1)),
                dict(max_requests=0), dict(abort_error_rate=1.5), dict(method="BREW"),
                dict(method="HEAD"), dict(users=2.5), dict(headers={"x-a": "1\r\nx-b: 2"}),
                dict(headers={"bad name": "1"})):
        with pytest.raises(ValueError):
            LoadSpec("http://127.0.0.1/", **bad).validate()


def test_open_model_counts_the_queue_behind_a_stall_and_the_closed_model_does_not(scripted):
    """One 300 ms pause on the 10th request. At 50 req/s on one connection, ~15 requests fall
    due during it: the open model charges each its wait; the closed model's user just waits,
    so only the paused request looks slow (coordinated omission)."""
    stall = lambda n: (200, 0.3 if n == 10 else 0.0)  # noqa: E731
    _, url = scripted(stall)
    open_ = run_stage(LoadSpec(url, users=1, duration_s=1.6, rate=50), allowed_hosts=LOCAL)
    _, url = scripted(stall)
    closed = run_stage(LoadSpec(url, users=1, duration_s=1.6, think_time_s=0.02),
                       allowed_hosts=LOCAL)
    assert open_.requests == 80 and open_.errors == 0
    assert open_.histogram.count_above_ms(100) >= 5 and open_.p95_ms > 100
    assert open_.max_ms >= 300
    assert closed.histogram.count_above_ms(100) <= 2 and closed.p95_ms < 100
    assert closed.max_ms >= 300
    # The service time (from the actual send) shows the one pause, as the closed model does.
    assert open_.service_histogram.count_above_ms(250) == 1


def test_shards_in_separate_processes_merge(sandbox):
    url = _app_url(sandbox, path="/api/health")
    r = run_stage(LoadSpec(url, users=4, duration_s=20, max_requests=40), allowed_hosts=LOCAL,
                  processes=2)
    assert (r.shards, r.users, r.requests, r.histogram.count) == (2, 4, 40, 40)
    assert r.status_counts == {"200": 40} and r.stopped_by == "max_requests"


def test_run_stages_and_stop_after_abort(sandbox, scripted):
    url = _app_url(sandbox, path="/api/health")
    rs = run_stages(LoadSpec(url, duration_s=5, max_requests=10), [1, 3], allowed_hosts=LOCAL)
    assert [(r.users, r.requests) for r in rs] == [(1, 10), (3, 10)]
    _, bad = scripted(lambda n: (500, 0.0))
    rs = run_stages(LoadSpec(bad, duration_s=5, abort_window=10), [1, 2, 3], allowed_hosts=LOCAL)
    assert len(rs) == 1 and rs[0].aborted


# -- capacity ------------------------------------------------------------------------------------
def _stage(users, rps, p95, avg=None, errors=0, requests=1000):
    h = LatencyHistogram()
    for _ in range(requests):
        h.record_ms(p95)  # all at one value: avg = p95 to within the bucket width
    return LoadResult("closed", users, None, requests, errors, 10.0, rps, {"200": requests}, {},
                      None, "duration", h)


def test_capacity_report_finds_the_limit_the_knee_and_the_replicas():
    t = Thresholds(max_avg_ms=100, max_p95_ms=150, max_error_rate=0.01, min_rps_per_user=0.5)
    stages = [_stage(100, 400, 20), _stage(500, 1900, 24), _stage(1000, 2100, 90),
              _stage(2000, 2150, 400)]
    rep = capacity_report(stages, t, current_replicas=2, target_load=3000)
    assert [s["passed"] for s in rep.stages] == [True, True, True, False]
    assert rep.max_passing_load == 1000
    # 500 -> 1000: p95 x3.75 while throughput grew x1.1: the knee.
    assert rep.knee_load == 1000 and "p95 grew x3.75" in rep.knee_reason
    assert rep.desired_replicas == 6  # ceil(2 * 3000 / 1000)
    fails = rep.stages[3]["failures"]
    assert any(f.startswith("p95 400") and f.endswith("> 150 ms") for f in fails)
    assert capacity_report(stages, t, current_replicas=2, target_load=1050).desired_replicas == 2


def test_capacity_report_edge_cases():
    t = Thresholds(max_avg_ms=100, max_p95_ms=150, min_rps_per_user=0.5)
    none = capacity_report([_stage(100, 10, 20)], t)  # throughput 10 < 0.5 x 100
    assert none.max_passing_load is None and none.desired_replicas is None
    assert "throughput" in none.stages[0]["failures"][0]
    allpass = capacity_report([_stage(100, 400, 20), _stage(200, 800, 20)], t, current_replicas=3,
                              target_load=100)
    assert allpass.desired_replicas == 3 and "lower bound" in allpass.recommendation
    assert allpass.knee_load is None
    errs = capacity_report([_stage(100, 400, 20, errors=50)], t)
    assert "error rate 5.00% > 1.00%" in errs.stages[0]["failures"]
    s = Thresholds().scaled(0.005)
    assert (s.max_avg_ms, s.max_p95_ms, s.min_rps_per_user) == (150, 225, 160)


# -- the command line ----------------------------------------------------------------------------
def _last_json(capsys):
    lines = capsys.readouterr().out.strip().splitlines()
    return json.loads(lines[-1]), lines


def test_cli_last_line_is_json(sandbox, capsys):
    url = _app_url(sandbox, path="")
    code = cli_main(["--url", url, "--path", "/api/health", "--users", "2", "--duration", "5",
                     "--max-requests", "15"])
    out, lines = _last_json(capsys)
    assert code == 0 and len(lines) > 1  # a readable summary before the JSON
    for key in ("requests", "rps", "p50_ms", "p95_ms", "p99_ms", "error_rate"):
        assert key in out
    assert out["requests"] == 15 and "histogram" not in out
    code = cli_main(["--url", url + "/api/einstein/analyze", "--users", "1", "--duration", "5",
                     "--max-requests", "2", "--body", '{"symbol": "BTC"}', "--json"])
    out, lines = _last_json(capsys)
    assert code == 0 and len(lines) == 1 and out["status_counts"] == {"200": 2}
    assert LatencyHistogram.decode(out["histogram"]).count == 2


def test_cli_open_model_and_abort_exit_code(scripted, capsys):
    _, url = scripted(lambda n: (500, 0.0))
    code = cli_main(["--url", url, "--users", "2", "--duration", "5", "--rate", "200",
                     "--abort-window", "10"])
    out, _ = _last_json(capsys)
    assert code == 1 and out["aborted"] and out["model"] == "open"


@pytest.mark.parametrize("argv, message", [
    (["--users", "2", "--duration", "1"], "--url"),
    (["--url", "http://127.0.0.1:9/", "--users", "0", "--duration", "1"], "users must be"),
    (["--url", "http://127.0.0.1:9/", "--users", "1", "--duration", "1", "--body", "{bad"],
     "not JSON"),
    (["--url", "http://169.254.169.254/", "--users", "1", "--duration", "1"], "link-local"),
    (["--url", "ftp://127.0.0.1/", "--users", "1", "--duration", "1"], "scheme"),
    (["--url", "http://127.0.0.1:9/", "--users", "1", "--duration", "x"], "invalid float"),
])
def test_cli_bad_arguments_exit_2(argv, message, capsys):
    assert cli_main(argv) == 2
    assert message in capsys.readouterr().err


# -- whom `atge loadtest` may load ----------------------------------------------------------------
class _Reached(Exception):
    """Raised in place of the engine: the CLI got as far as handing it the stage."""


@pytest.fixture
def no_engine(monkeypatch):
    """`run_stage` replaced by a recorder; no request leaves."""
    import atge_assets.load.cli as load_cli

    calls = []

    def recorder(spec, *, allowed_hosts, processes=1):
        calls.append((spec, list(allowed_hosts)))
        raise _Reached()

    monkeypatch.setattr(load_cli, "run_stage", recorder)
    monkeypatch.delenv("ATGE_ALLOWED_HOSTS", raising=False)
    return calls


def test_cli_refuses_a_private_address_in_one_line_without_sending_anything():
    env = {k: v for k, v in os.environ.items() if k != "ATGE_ALLOWED_HOSTS"}
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "atge_assets.cli", "loadtest", "--url",
                          "http://10.0.0.5/", "--users", "10", "--duration", "30"],
                         capture_output=True, text=True, timeout=60, env=env, check=False)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr == ("atge loadtest: host '10.0.0.5' is a private address (RFC 1918); pass "
                          "--allow-host 10.0.0.5 to load it\n")
    assert time.monotonic() - started < 20  # refused at once, not after connection timeouts


@pytest.mark.parametrize("host, kind", [
    ("10.0.0.5", "private address (RFC 1918)"), ("172.16.0.1", "private address (RFC 1918)"),
    ("192.168.1.20:8080", "private address (RFC 1918)"),
    ("0x0a000005", "private address (RFC 1918)"), ("[::ffff:10.0.0.5]", "(RFC 1918)"),
    ("100.64.0.1", "carrier-grade NAT"), ("[fd12:3456::1]", "unique-local IPv6"),
    ("169.254.169.254", "metadata"), ("2852039166", "metadata"), ("[fe80::1]", "link-local"),
    ("metadata.google.internal", "metadata"),
])
def test_cli_refuses_non_public_targets_unless_named(no_engine, capsys, host, kind):
    assert cli_main(["--url", f"http://{host}/", "--users", "1", "--duration", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("atge loadtest: host ") and kind in err and err.count("\n") == 1
    assert no_engine == []


def test_cli_loads_a_private_address_named_by_allow_host_or_the_environment(no_engine,
                                                                             monkeypatch):
    argv = ["--url", "http://10.0.0.5:8080/", "--users", "1", "--duration", "1"]
    with pytest.raises(_Reached):
        cli_main(argv + ["--allow-host", "10.0.0.5"])
    monkeypatch.setenv("ATGE_ALLOWED_HOSTS", "*.vercel.app, 10.0.0.*")
    with pytest.raises(_Reached):
        cli_main(argv)
    for spec, allowed in no_engine:  # and the engine's own check lets the stage through
        assert check_url(spec.url, allowed) == "http://10.0.0.5:8080/"
    # A named private host does not open link-local: `*` still refuses the metadata service.
    monkeypatch.setenv("ATGE_ALLOWED_HOSTS", "*")
    assert cli_main(["--url", "http://0xa9fea9fe/", "--users", "1", "--duration", "1"]) == 2
    assert len(no_engine) == 2


def test_cli_judges_a_name_by_what_it_resolves_to(no_engine, monkeypatch, capsys):
    real = socket.getaddrinfo

    def resolver(host, *args, **kw):
        if host == "intranet.example":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.168.7.7", 80))]
        if host == "app.example":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", 80))]
        return real(host, *args, **kw)

    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    argv = ["--users", "1", "--duration", "1"]
    assert cli_main(["--url", "http://intranet.example/"] + argv) == 2
    assert capsys.readouterr().err == (
        "atge loadtest: host 'intranet.example' (192.168.7.7) is a private address (RFC 1918); "
        "pass --allow-host intranet.example to load it\n")
    assert no_engine == []
    with pytest.raises(_Reached):
        cli_main(["--url", "http://intranet.example/", "--allow-host", "intranet.example"] + argv)
    with pytest.raises(_Reached):  # a public name needs nothing more than its URL
        cli_main(["--url", "https://app.example/"] + argv)
    assert [s.url for s, _ in no_engine] == ["http://intranet.example/", "https://app.example/"]


def test_cli_loads_its_own_loopback_url_as_before(scripted, capsys, monkeypatch):
    monkeypatch.delenv("ATGE_ALLOWED_HOSTS", raising=False)
    srv, url = scripted()
    spelt = url.replace("127.0.0.1", "127.1")  # the same address, spelt as resolvers accept
    assert cli_main(["--url", spelt, "--users", "1", "--duration", "5", "--max-requests", "3",
                     "--json"]) == 0
    out, _ = _last_json(capsys)
    assert out["requests"] == 3 and srv.count == 3
