"""The whole system as a user starts it: `atge up` (sandbox, webserver, daemon), nothing mocked.

The sensor fires by itself, the run is queued and launched by the daemon, and the sandbox's
rollback endpoint is called by the rollback asset. Once on the embedded SQLite default, once with
the one switch (ATGE_DATABASE_URL) that puts Dagster and the history on the Postgres server.
"""

import contextlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from atge_assets import stack
from atge_assets.core.store import HistoryStore
from atge_assets_tests.conftest import fresh_pg_database


@pytest.mark.slow
@pytest.mark.parametrize("storage", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_atge_up_rolls_back_a_slow_deployment_by_itself(tmp_path, storage):
    with contextlib.ExitStack() as cleanup:
        slack = cleanup.enter_context(_receiver())
        env = {"ATGE_SLACK_WEBHOOK_URL": slack.url}
        history_url = f"sqlite:///{tmp_path / 'home' / 'history.sqlite'}"
        if storage == "postgres":
            history_url = env["ATGE_DATABASE_URL"] = cleanup.enter_context(fresh_pg_database())
        s = stack.start(tmp_path / "home", extra_env=env)
        try:
            s.wait_for(s.ui_ready, 180)
            first = s.status()["production"]
            store = cleanup.enter_context(contextlib.closing(_Closing(HistoryStore(history_url))))
            s.wait_for(lambda: store.s.decisions_for(first), 240)
            # Issue 2: a 30%-slower production deployment is rolled back by itself.
            slow = s.deploy(slowdown=1.3)
            event = s.wait_for(lambda: s.status()["rollbacks"], 240)
            assert event == [dict(event[0], **{"from": slow, "to": first})]
            assert s.status()["production"] == first
            assert [d["decision"] for d in store.s.decisions_for(slow)] == ["rolled_back"]
            # ...and a Slack-shaped message naming it arrives.
            msg = s.wait_for(lambda: [m for m in slack.got if slow in m.get("text", "")
                                      and "olled back" in m["text"]], 60)
            assert len(msg) == 1 and msg[0]["blocks"]
            # Issue 5: a healthy preview becomes production by itself.
            preview = s.deploy(target="preview")
            s.wait_for(lambda: s.status()["production"] == preview, 240)
            s.wait_for(lambda: len(store.s.decisions_for(preview)) == 2, 120)
            decisions = [d["decision"] for d in store.s.decisions_for(preview)]
            assert sorted(decisions) == ["kept", "promoted"]
            assert len(s.status()["rollbacks"]) == 1
            home = tmp_path / "home"
            on_sqlite = (home / "dagster" / "history" / "runs.db").exists()
            assert on_sqlite == (storage == "sqlite")
            assert (home / "history.sqlite").exists() == (storage == "sqlite")
            assert f"{'Postgres' if storage == 'postgres' else 'SQLite'} storage" in \
                s.log_path.read_text()
        finally:
            code = s.stop()
        assert code == 0, s.log_path.read_text()[-3000:]
        log = s.log_path.read_text()
        assert "dagster stopped" in log and "sandbox stopped" in log


@contextlib.contextmanager
def _receiver():
    """A loopback Slack incoming-webhook stand-in that keeps what it receives."""
    got: list[dict] = []

    class H(BaseHTTPRequestHandler):
        def do_POST(self):
            got.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
            self.send_response(200)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *a):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    srv.got, srv.url = got, f"http://127.0.0.1:{srv.server_address[1]}/services/T0/B0/x"
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


class _Closing:
    def __init__(self, s):
        self.s = s

    def close(self):
        self.s.dispose()
