"""The Vercel webhook intake over real loopback HTTP, with its queue in a SQLite file (and once in
Postgres)."""

import json
import logging
import threading

import httpx
import pytest

from atge_assets.deployments import webhook_intake as wi
from atge_assets_tests.conftest import fresh_pg_database

SECRET = "vercel_webhook_secret_42"


def _event(dep_id="dpl_abc123", type_="deployment.succeeded", event_id="evt_1", **payload):
    body = {
        "id": event_id, "type": type_, "createdAt": 1_700_000_000_000, "region": "iad1",
        "payload": {
            "deployment": {"id": dep_id, "url": "atge-abc.vercel.app", "name": "atge",
                           "meta": {"githubCommitSha": "deadbeef"}},
            "target": "production", "project": {"id": "prj_1"}, "team": {"id": "team_1"},
            **payload,
        },
    }
    return json.dumps(body).encode()


def _headers(raw: bytes, secret: str = SECRET) -> dict:
    return {"content-type": "application/json",
            "x-vercel-signature": wi.vercel_signature(raw, secret)}


class Intake:
    """A server on an ephemeral port over a queue file; `restart` is a new process's view."""

    def __init__(self, url: str, **kw):
        self.db_url, self.kw = url, kw
        self._start()

    def _start(self):
        self.queue = wi.IntakeQueue(self.db_url)
        self.server = wi.IntakeServer(("127.0.0.1", 0), self.queue, SECRET, **self.kw)
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        self.client = httpx.Client(timeout=5.0)

    def stop(self):
        self.client.close()
        self.server.shutdown()
        self.server.server_close()
        self.queue.dispose()

    def restart(self):
        self.stop()
        self._start()

    def post(self, raw: bytes, headers: dict | None = None) -> httpx.Response:
        return self.client.post(self.server.url, content=raw,
                                headers=_headers(raw) if headers is None else headers)


@pytest.fixture
def intake(tmp_path):
    i = Intake(f"sqlite:///{tmp_path / 'intake.sqlite'}")
    yield i
    i.stop()


def test_signed_event_is_queued_and_survives_a_restart(intake):
    r = intake.post(_event())
    assert r.status_code == 202 and r.json()["status"] == "queued"
    intake.restart()
    (entry,) = intake.queue.pending()
    assert entry.deployment_id == "dpl_abc123" and entry.event_type == "deployment.succeeded"
    assert entry.target == "production" and entry.project_id == "prj_1"
    assert entry.url == "atge-abc.vercel.app" and entry.created_ms == 1_700_000_000_000
    assert entry.meta == {"githubCommitSha": "deadbeef"} and entry.id == r.json()["id"]


@pytest.mark.postgres
def test_queue_on_postgres_with_a_bare_url():
    with fresh_pg_database() as url:
        i = Intake("postgresql://" + url.split("://", 1)[1])
        try:
            assert i.queue.engine.dialect.driver == "psycopg2"
            first = i.post(_event()).json()["id"]
            i.restart()
            assert i.post(_event()).json() == {"status": "duplicate", "id": first,
                                               "deployment_id": "dpl_abc123"}
            assert [e.id for e in i.queue.pending()] == [first]
            assert i.queue.ack([first]) == 1 and i.queue.pending() == []
        finally:
            i.stop()


def test_ack_removes_from_pending_and_a_redelivery_stays_a_duplicate(intake):
    first = intake.post(_event("dpl_a", event_id="evt_a")).json()["id"]
    intake.post(_event("dpl_b", event_id="evt_b", target=None))
    assert [e.deployment_id for e in intake.queue.pending()] == ["dpl_a", "dpl_b"]
    assert [e.deployment_id for e in intake.queue.pending(limit=1)] == ["dpl_a"]
    assert intake.queue.pending()[1].target == "preview"
    assert intake.queue.ack([first, first, 999]) == 1
    assert [e.deployment_id for e in intake.queue.pending()] == ["dpl_b"]
    again = intake.post(_event("dpl_a", event_id="evt_a"))
    assert again.status_code == 202 and again.json() == {"status": "duplicate", "id": first,
                                                         "deployment_id": "dpl_a"}
    assert [e.deployment_id for e in intake.queue.pending()] == ["dpl_b"]
    assert intake.queue.ack([]) == 0


def test_ready_and_promoted_are_queued_too(intake):
    intake.post(_event(type_="deployment.ready", event_id="e1"))
    intake.post(_event(type_="deployment.promoted", event_id="e2"))
    assert [e.event_type for e in intake.queue.pending()] == ["deployment.ready",
                                                              "deployment.promoted"]


def test_bad_or_missing_signature_is_403_logged_and_not_queued(intake, caplog):
    caplog.set_level(logging.WARNING, logger=wi.__name__)
    raw = _event()
    assert intake.post(raw, _headers(raw, "wrong-secret")).status_code == 403
    assert intake.post(raw, {"content-type": "application/json"}).status_code == 403
    tampered = raw.replace(b"dpl_abc123", b"dpl_evil99")
    assert intake.post(tampered, _headers(raw)).status_code == 403
    non_ascii = {"x-vercel-signature": "\u00e9".encode("latin-1") * 40}
    assert intake.post(raw, non_ascii).status_code == 403
    assert intake.queue.pending() == []
    messages = [r.getMessage() for r in caplog.records]
    assert any("signature mismatch" in m for m in messages)
    assert any("missing signature" in m for m in messages)
    assert SECRET not in caplog.text


def test_malformed_json_is_400(intake):
    r = intake.post(b"{not json")
    assert r.status_code == 400 and "JSON" in r.json()["error"]
    assert intake.post(b"[1, 2]").status_code == 400
    assert intake.queue.pending() == []


def test_missing_or_odd_deployment_id_is_400_with_a_reason(intake):
    no_id = json.dumps({"id": "e", "type": "deployment.succeeded",
                        "payload": {"deployment": {"url": "x.vercel.app"}}}).encode()
    r = intake.post(no_id)
    assert r.status_code == 400 and "payload.deployment.id" in r.json()["error"]
    assert intake.post(json.dumps({"type": "deployment.succeeded"}).encode()).status_code == 400
    assert intake.post(_event("../../etc")).status_code == 400
    assert intake.queue.pending() == []


def test_unknown_types_are_ignored_with_202(intake):
    r = intake.post(_event(type_="deployment.created"))
    assert r.status_code == 202 and r.json()["status"] == "ignored"
    assert intake.post(json.dumps({"type": "domain.created"}).encode()).status_code == 202
    assert intake.queue.pending() == []


def test_oversize_body_is_413(tmp_path):
    i = Intake(f"sqlite:///{tmp_path / 'q.sqlite'}", max_body=512)
    try:
        raw = _event(padding="x" * 1000)
        assert i.post(raw).status_code == 413
        assert i.post(_event()).status_code == 202  # a fresh connection still works
        assert [e.deployment_id for e in i.queue.pending()] == ["dpl_abc123"]
    finally:
        i.stop()


def test_other_projects_are_ignored_when_a_project_is_set(tmp_path):
    i = Intake(f"sqlite:///{tmp_path / 'q.sqlite'}", project_id="prj_mine")
    try:
        assert i.post(_event()).json()["status"] == "ignored"
        assert i.queue.pending() == []
    finally:
        i.stop()


def test_wrong_path_and_health(intake):
    base = intake.server.base_url
    assert intake.client.post(base + "/other", content=b"{}").status_code == 404
    assert intake.client.get(base + "/healthz").json() == {"status": "ok"}


def test_a_secret_is_required(tmp_path):
    q = wi.IntakeQueue(f"sqlite:///{tmp_path / 'q.sqlite'}")
    try:
        with pytest.raises(ValueError):
            wi.IntakeServer(("127.0.0.1", 0), q, "")
    finally:
        q.dispose()


def test_signature_rotation_accepts_either_secret():
    raw = _event()
    assert wi.verify_vercel_signature(raw, wi.vercel_signature(raw, "new"), ["old", "new"])
    assert wi.verify_vercel_signature(raw, wi.vercel_signature(raw, "old").upper(), "old")
    assert not wi.verify_vercel_signature(raw, None, "old")
    assert not wi.verify_vercel_signature(raw, wi.vercel_signature(raw, "x"), ["old", "new"])


def test_prune_forgets_old_acked_entries_only(intake):
    a = intake.post(_event("dpl_a", event_id="a")).json()["id"]
    intake.post(_event("dpl_b", event_id="b"))
    intake.queue.ack([a])
    assert intake.queue.prune(older_than_s=-1) == 1
    assert [e.deployment_id for e in intake.queue.pending()] == ["dpl_b"]


def test_atge_webhook_intake_runs_alone_with_its_secret_and_queue_from_the_environment(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    from atge_assets.harness.stack import free_port, stop_process, wait_until

    port, url = free_port(), f"sqlite:///{tmp_path / 'queue.sqlite'}"
    env = dict(os.environ, ATGE_VERCEL_WEBHOOK_SECRET=SECRET, ATGE_HISTORY_URL=url)
    proc = subprocess.Popen([sys.executable, "-m", "atge_assets.cli", "webhook-intake",
                             "--port", str(port)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{port}"

        def up():
            try:
                return httpx.get(base + "/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return proc.poll() is not None and pytest.fail(proc.stderr.read())

        wait_until(up, 60, what="the intake to answer")
        raw = _event("dpl_fromenv")
        assert httpx.post(base + wi.DEFAULT_PATH, content=raw, headers=_headers(raw),
                          timeout=5).status_code == 202
        bad = httpx.post(base + wi.DEFAULT_PATH, content=raw, headers=_headers(raw, "wrong"),
                         timeout=5)
        assert bad.status_code == 403
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
        assert SECRET.encode() not in cmdline and url.encode() not in cmdline
    finally:
        stop_process(proc, signal.SIGTERM, 30, group=False)
    queue = wi.IntakeQueue(url)
    assert [e.deployment_id for e in queue.pending(10)] == ["dpl_fromenv"]
    queue.dispose()
