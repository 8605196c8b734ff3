"""The deployment sensor against a broken or hostile provider: a real sensor evaluation on a real
Dagster instance, the real Vercel client, a loopback API (hostile_api.py) answering each fault.

Time limits are generous upper bounds over a small injected tick deadline (the machine is
shared); what they catch is a tick that sleeps or reads for tens of seconds, or an hour.
"""

import json
import logging
import time

import dagster as dg
import pytest

from atge_assets.deployments.webhook_intake import BadEvent, parse_event
from atge_assets.lib.providers.base import is_deployment_id
from atge_assets.lib.resources import HistoryResource, VercelResource
from atge_assets_tests.conftest import TOKEN
from atge_assets_tests.deployments.helpers import tick
from atge_assets_tests.deployments.hostile_api import hostile_api

DEADLINE_S = 2.0
GENEROUS_S = 12.0  # far under the 20 s or more each fault takes without a deadline


@pytest.fixture
def api():
    with hostile_api() as srv:
        yield srv


@pytest.fixture
def res(api, history_url):
    return {"vercel": VercelResource(token=TOKEN, project_id="prj_hostile", base_url=api.url,
                                     timeout_s=5.0),
            "history": HistoryResource(url=history_url)}


def now_ms() -> int:
    return int(time.time() * 1000)


def keys(result) -> list[str]:
    return [r.partition_key for r in result.run_requests] if result.run_requests else []


def skip_message(result) -> str:
    if isinstance(result, dg.SkipReason):
        return result.skip_message or ""
    return result.skip_reason.skip_message if result.skip_reason else ""


def rejected(store) -> list[dict]:
    return store.table_rows("rejected_inputs")


def test_entry_from_2100_does_not_blind_the_sensor(api, res, instance, store):
    first = api.add("dpl_first", now_ms() - 60_000)
    api.add("dpl_future", 4_102_444_800_000)  # 2100-01-01
    r1 = tick(instance, res)
    assert keys(r1) == [first["uid"]]
    assert json.loads(r1.cursor)["since"] <= now_ms()
    [row] = rejected(store)
    assert "dpl_future" in row["detail"] and "future" in row["detail"]

    # The next real deployment (production, slower) is still seen.
    late = api.add("dpl_slower_prod", now_ms(), meta={"slowdown": "1.3"})
    r2 = tick(instance, res, r1.cursor)
    assert keys(r2) == [late["uid"]]
    assert len(rejected(store)) == 1  # listed again every poll, recorded once


def test_cursor_already_moved_to_2100_recovers(api, res, instance):
    """A cursor stored by the sensor before this fix must not keep it blind."""
    dep = api.add("dpl_after_the_bug", now_ms() - 1000)
    r = tick(instance, res, json.dumps({"since": 4_102_444_800_000, "pending": [], "ack": []}))
    assert keys(r) == [dep["uid"]]


@pytest.mark.parametrize("created", [float("nan"), float("inf"), float("-inf"), -5])
def test_non_finite_or_negative_times_are_rejected_and_recorded(api, res, instance, store,
                                                                created):
    api.honour_since = False  # a negative time is listed only by a server that ignores `since`
    api.add("dpl_weird_time", created)
    good = api.add("dpl_good", now_ms() - 1000)
    r = tick(instance, res)  # no exception, no provider-error skip
    assert keys(r) == [good["uid"]]
    [row] = rejected(store)
    assert row["source"] == "provider.list_deployments" and "dpl_weird_time" in row["detail"]
    assert json.loads(r.cursor)["since"] == good["createdAt"]


@pytest.mark.parametrize("bad_id", ["dpl_a/../b", "d" * 300, "dpl_x\n", "dpl_a?x=1"])
def test_bad_ids_never_become_partitions(api, res, instance, store, bad_id):
    api.add(bad_id, now_ms() - 2000)
    good = api.add("dpl_good", now_ms() - 1000)
    r = tick(instance, res)
    assert keys(r) == [good["uid"]]
    assert instance.get_dynamic_partitions("deployments") == [good["uid"]]
    [row] = rejected(store)
    assert "not a deployment id" in row["detail"] and len(row["detail"]) < 400


@pytest.mark.parametrize("bad_id", ["dpl_a/../b", "d" * 300, "dpl_x\n", ""])
def test_webhook_intake_refuses_the_same_ids(bad_id):
    assert not is_deployment_id(bad_id)
    body = json.dumps({"type": "deployment.succeeded",
                       "payload": {"deployment": {"id": bad_id}}}).encode()
    with pytest.raises(BadEvent):
        parse_event(body)


def test_pending_id_answering_403_is_dropped_after_n_ticks(api, res, instance, store):
    api.by_id["dpl_locked"] = (403, {}, {"error": {"code": "forbidden", "message": "no"}})
    fine = api.add("dpl_fine", now_ms() - 120_000)  # before `since`: only reached by id
    # A cursor in today's format (no `tries`): read as is.
    cursor = json.dumps({"since": now_ms() - 60_000, "pending": ["dpl_locked", "dpl_fine"],
                         "ack": []})
    results = []
    for _ in range(5):
        results.append(tick(instance, res, cursor, max_pending_tries=5))
        cursor = results[-1].cursor
    assert keys(results[0]) == [fine["uid"]]  # the refused id does not hold the others back
    for n, r in enumerate(results[:4], start=1):
        c = json.loads(r.cursor)
        assert c["pending"] == ["dpl_locked"] and c["tries"] == {"dpl_locked": n}
    assert json.loads(results[4].cursor)["pending"] == []
    [row] = rejected(store)
    assert row["source"] == "provider.get_deployment"
    assert "dpl_locked" in row["detail"] and "403" in row["detail"] and "5 tries" in row["detail"]
    assert api.requests.count("/v13/deployments/dpl_locked") == 5
    tick(instance, res, cursor)
    assert api.requests.count("/v13/deployments/dpl_locked") == 5  # forgotten


def test_rate_limit_an_hour_away_ends_the_tick_within_its_deadline(api, res, instance):
    api.add("dpl_a", now_ms() - 1000)
    reset = int(time.time()) + 3600
    api.list_answer = (429, {"x-ratelimit-reset": str(reset)}, {"error": {"code": "rate"}})
    cursor = json.dumps({"since": now_ms() - 60_000, "pending": [], "ack": []})
    t0 = time.monotonic()
    r = tick(instance, res, cursor, tick_deadline_s=DEADLINE_S)
    assert time.monotonic() - t0 < GENEROUS_S
    msg = skip_message(r)
    assert "cursor kept" in msg and "rate limited" in msg and "UTC" in msg
    assert api.requests.count("/v6/deployments") == 1  # told when to come back, no retry

    # Limit lifted: the next tick carries on from the same cursor.
    api.list_answer = None
    assert keys(tick(instance, res, cursor)) == ["dpl_a"]


def test_rate_limited_pending_checks_resume_next_tick(api, res, instance):
    api.add("dpl_old", now_ms() - 120_000)
    reset = str(int(time.time()) + 3600)
    api.by_id["dpl_old"] = (429, {"x-ratelimit-reset": reset}, {"error": {"code": "rate"}})
    cursor = json.dumps({"since": now_ms() - 60_000, "pending": ["dpl_old"], "ack": []})
    t0 = time.monotonic()
    r = tick(instance, res, cursor, tick_deadline_s=DEADLINE_S)
    assert time.monotonic() - t0 < GENEROUS_S
    assert "rate limited" in skip_message(r) and "rest next tick" in skip_message(r)
    c = json.loads(r.cursor)
    assert c["pending"] == ["dpl_old"] and "tries" not in c  # a rate limit is no refusal
    del api.by_id["dpl_old"]
    assert keys(tick(instance, res, r.cursor)) == ["dpl_old"]


@pytest.mark.parametrize("mode", ["body", "headers"])
def test_trickling_answer_is_cut_at_the_deadline(api, res, instance, mode):
    api.add("dpl_a", now_ms() - 1000)
    api.trickle, api.trickle_s = mode, 0.1  # about 30 s for the whole answer
    t0 = time.monotonic()
    r = tick(instance, res, tick_deadline_s=DEADLINE_S)
    elapsed = time.monotonic() - t0
    assert elapsed < GENEROUS_S, f"tick took {elapsed:.1f} s"
    assert isinstance(r, dg.SkipReason) and "deadline" in r.skip_message
    api.trickle = None
    assert keys(tick(instance, res)) == ["dpl_a"]


def test_20000_ready_deployments_are_requested_in_bounded_ticks_oldest_first(api, res, instance):
    base = now_ms() - 30 * 60_000
    ids = [f"dpl_{i:05d}" for i in range(20_000)]
    for i, dep_id in enumerate(ids):
        api.add(dep_id, base + i)
    cursor, got = None, []
    for _ in range(3):
        t0 = time.monotonic()
        r = tick(instance, res, cursor)
        assert time.monotonic() - t0 < 30
        assert len(r.run_requests) == 50
        got += keys(r)
        cursor = r.cursor
    assert got == ids[:150]  # in creation order, none twice, none skipped
    assert len(cursor) < 200
    assert len(instance.get_dynamic_partitions("deployments")) == 150


def test_ready_beyond_the_bound_from_the_intake_and_pending_wait_their_turn(api, res, instance,
                                                                            store):
    from atge_assets.deployments.webhook_intake import IntakeQueue, VercelEvent

    t = now_ms() - 120_000  # before `since`: reached only by id
    for i in range(3):
        api.add(f"dpl_p{i}", t + i)
    queue = IntakeQueue(store.engine)
    queue.put(VercelEvent("evt_1", "deployment.succeeded", "dpl_p2", None, "production", None,
                          None, {}))
    cursor = json.dumps({"since": now_ms() - 60_000, "pending": ["dpl_p1", "dpl_p0"],
                         "ack": []})
    r1 = tick(instance, res, cursor, max_runs_per_tick=1)
    r2 = tick(instance, res, r1.cursor, max_runs_per_tick=1)
    r3 = tick(instance, res, r2.cursor, max_runs_per_tick=1)
    assert [keys(r) for r in (r1, r2, r3)] == [["dpl_p0"], ["dpl_p1"], ["dpl_p2"]]
    assert json.loads(r3.cursor)["pending"] == []
    tick(instance, res, r3.cursor, max_runs_per_tick=1)
    assert queue.pending() == []  # acked once its run was requested


def test_echoed_token_never_reaches_skip_reasons_logs_or_history(api, res, instance, store,
                                                                  capsys, caplog):
    echo = {"error": {"code": "bad", "message": f"invalid header Authorization: Bearer {TOKEN}"}}
    caplog.set_level(logging.DEBUG)
    texts = []

    api.list_answer = (400, {}, echo)  # 4xx: the message goes into the error
    texts.append(skip_message(tick(instance, res, tick_deadline_s=DEADLINE_S)))
    api.list_answer = (500, {}, echo)  # 5xx: retried, then reported
    texts.append(skip_message(tick(instance, res, tick_deadline_s=DEADLINE_S)))
    assert all("***" in t for t in texts), texts

    api.list_answer = None
    api.add(f"dpl_{TOKEN}", now_ms() - 1000)  # an id made of the token
    api.by_id["dpl_echo"] = (403, {}, echo)
    cursor = json.dumps({"since": now_ms() - 60_000, "pending": ["dpl_echo"], "ack": []})
    r = tick(instance, res, cursor, max_pending_tries=1)
    texts.append(r.cursor + skip_message(r))
    rows = rejected(store)
    assert len(rows) == 2 and any("dpl_echo" in row["detail"] for row in rows)
    assert instance.get_dynamic_partitions("deployments") == []
    texts += [row["detail"] for row in rows]
    out = capsys.readouterr()
    texts += [out.out, out.err, caplog.text]
    assert "dpl_echo" in out.err + caplog.text  # the logs were captured at all
    assert not [t for t in texts if TOKEN in t]
