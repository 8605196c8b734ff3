import json
import time

import dagster as dg

from atge_assets.deployments.sensors import parse_cursor
from atge_assets_tests.conftest import fault
from atge_assets_tests.deployments.helpers import tick


def keys(result):
    return [r.partition_key for r in result.run_requests]


def test_each_ready_deployment_once(sandbox, instance, resources):
    first = sandbox.state.world.production
    r1 = tick(instance, resources)
    assert keys(r1) == [first]
    assert r1.run_requests[0].run_key == first
    assert r1.run_requests[0].tags["atge/target"] == "production"
    cursor = r1.cursor
    assert len(cursor) < 200  # a small cursor, not a list of everything seen

    # Nothing new: no run, and the same deployment is not requested again.
    r2 = tick(instance, resources, cursor)
    assert keys(r2) == [] and "no new" in r2.skip_reason.skip_message

    a = sandbox.state.create(target="preview").id
    b = sandbox.state.create(target="production").id
    r3 = tick(instance, resources, r2.cursor)
    assert keys(r3) == [a, b]
    assert set(instance.get_dynamic_partitions("deployments")) == {first, a, b}

    # A restarted daemon with a lost cursor still never asks twice: partitions remember.
    r4 = tick(instance, resources, None)
    assert keys(r4) == []


def test_building_deployments_are_picked_up_when_ready(sandbox, instance, resources):
    r1 = tick(instance, resources)
    slow_build = sandbox.state.create(target="production", build_s=1.0).id
    quick = sandbox.state.create(target="production").id  # created later, READY first
    r2 = tick(instance, resources, r1.cursor)
    assert keys(r2) == [quick]
    assert json.loads(r2.cursor)["pending"] == [slow_build]
    time.sleep(1.1)
    r3 = tick(instance, resources, r2.cursor)
    assert keys(r3) == [slow_build]
    assert json.loads(r3.cursor)["pending"] == []


def test_provider_error_keeps_cursor(sandbox, instance, resources):
    r1 = tick(instance, resources)
    sandbox.state.api_faults.extend([fault(500)] * 4)
    sandbox.state.create(target="production")
    r2 = tick(instance, resources, r1.cursor)
    assert isinstance(r2, dg.SkipReason) and "provider error" in r2.skip_message
    # The daemon keeps the old cursor when a tick skips without one; the next tick catches up.
    r3 = tick(instance, resources, r1.cursor)
    assert len(keys(r3)) == 1


def test_malformed_entries_are_logged_recorded_and_skipped(sandbox, instance, resources, store,
                                                          capsys):
    good = sandbox.state.world.production
    dep = sandbox.state.get(good)
    sandbox.state.api_faults.append(fault(200, body={"deployments": [
        {"uid": good, "url": f"{sandbox.base_url}/d/{good}", "created": dep.created_ms,
         "readyState": "READY", "target": "production"},
        {"uid": "dpl_broken", "created": "yesterday"},
    ], "pagination": {"next": None}}))
    r = tick(instance, resources)
    assert keys(r) == [good]
    err = capsys.readouterr().err
    assert "malformed deployment entry: deployment dpl_broken" in err
    rows = store.table_rows("rejected_inputs")
    assert [r["source"] for r in rows] == ["provider.list_deployments"]
    assert "dpl_broken" in rows[0]["detail"]


def test_unreadable_cursor_falls_back_to_lookback():
    since, pending, acks = parse_cursor("{not json", lookback_hours=1)
    assert pending == [] == acks and abs(since / 1000 - (time.time() - 3600)) < 5
    assert parse_cursor(json.dumps({"since": 5, "pending": ["a"], "ack": [3]}), 1) == (5, ["a"], [3])


def test_webhook_intake_deployment_is_picked_up_and_acked_next_tick(
        sandbox, instance, resources, store):
    """A deployment older than the poll window, announced through the signed webhook intake."""
    import hashlib
    import hmac

    import httpx

    from atge_assets.deployments.webhook_intake import IntakeQueue, IntakeServer

    r1 = tick(instance, resources)
    old = sandbox.state.create(target="preview")
    old.created_ms -= 10 * 3600 * 1000  # before the cursor: polling alone would never see it
    queue = IntakeQueue(store.engine)
    server = IntakeServer(("127.0.0.1", 0), queue, "whsec")
    import threading

    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        body = json.dumps({"id": "evt_1", "type": "deployment.succeeded", "createdAt": 1,
                           "payload": {"deployment": {"id": old.id, "url": "x.vercel.app"},
                                       "target": None}}).encode()
        bad = httpx.post(server.url, content=body, headers={"x-vercel-signature": "00"})
        assert bad.status_code == 403
        sig = hmac.new(b"whsec", body, hashlib.sha1).hexdigest()
        ok = httpx.post(server.url, content=body, headers={"x-vercel-signature": sig})
        assert ok.status_code < 300
    finally:
        server.shutdown()
        server.server_close()
    r2 = tick(instance, resources, r1.cursor)
    assert keys(r2) == [old.id]
    assert len(queue.pending()) == 1  # not acked until the next tick
    r3 = tick(instance, resources, r2.cursor)
    assert keys(r3) == [] and queue.pending() == []
