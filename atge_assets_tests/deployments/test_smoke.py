"""Smoke checks against a real loopback server whose answers are slow on cue."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from atge_assets.deployments.smoke import MIN_LIMIT_MS, SmokeSpec, run_smoke

SPEC = SmokeSpec("health", "/api/health", expect_keys=("status",), max_ms=1.0)  # floor: 250 ms


@pytest.fixture
def server():
    """Answers {"status": "ok"}; sleeps `delays.pop(0)` seconds first while any are queued."""
    delays: list[float] = []

    class H(BaseHTTPRequestHandler):
        def do_GET(self):
            time.sleep(delays.pop(0) if delays else 0.0)
            body = json.dumps({"status": "ok"}).encode()
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True).start()
    srv.delays, srv.url = delays, f"http://127.0.0.1:{srv.server_address[1]}"
    yield srv
    srv.shutdown()
    srv.server_close()


def test_one_slow_answer_is_asked_again_and_passes(server):
    server.delays.append(2 * MIN_LIMIT_MS / 1000)
    r = run_smoke(server.url, SPEC)
    assert r.passed and r.ms < MIN_LIMIT_MS and r.reasons == ["ok"]
    assert server.delays == []  # both requests were made


def test_slow_twice_fails_with_its_time(server):
    server.delays.extend([2 * MIN_LIMIT_MS / 1000] * 2)
    r = run_smoke(server.url, SPEC)
    assert not r.passed and r.ms > MIN_LIMIT_MS
    assert r.reasons == [f"took {r.ms:.0f} ms, limit {MIN_LIMIT_MS:.0f} ms, twice"]


def test_a_wrong_answer_fails_at_once(server):
    server.delays.extend([2 * MIN_LIMIT_MS / 1000, 0.0])
    r = run_smoke(server.url, SmokeSpec("health", "/api/health", expect_keys=("missing",),
                                        max_ms=1.0))
    assert not r.passed and r.reasons[0] == "JSON lacks ['missing']"
    assert server.delays == [0.0]  # not asked again: more time would not mend it
