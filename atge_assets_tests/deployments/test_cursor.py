"""The sensor's pure decisions (deployments/cursor.py): no Dagster, no network."""

import json

from atge_assets.deployments import cursor as cm
from atge_assets.lib.providers.base import Deployment

NOW = 1_800_000_000_000
DEFAULT = NOW - 3_600_000


def dep(dep_id: str, created: int, state: str = "READY") -> Deployment:
    return Deployment(dep_id, f"https://{dep_id}.vercel.app", state, "production", created)


def plan(cur, listed=(), **kw):
    args = dict(listed=list(listed), malformed=[], fetched={}, refused={}, gone=set(),
                unchecked=set(), intake=[], known=set(), now_ms=NOW)
    args.update(kw)
    return cm.plan_tick(cur, **args)


def test_every_earlier_cursor_reads_back():
    assert cm.parse(json.dumps({"since": 5, "pending": ["dpl_a"]}), DEFAULT, NOW).pending == [
        "dpl_a"]
    c = cm.parse(json.dumps({"since": 5, "pending": ["dpl_a"], "ack": [3]}), DEFAULT, NOW)
    assert (c.since, c.pending, c.acks, c.tries, c.rejected) == (5, ["dpl_a"], [3], {}, [])
    again = cm.parse(c.dumps(), DEFAULT, NOW)
    assert (again.since, again.pending, again.acks) == (5, ["dpl_a"], [3])


def test_unusable_cursors_fall_back_to_the_lookback():
    for raw in ["{not json", '{"since": Infinity}', '{"since": NaN}', "[1]",
                json.dumps({"since": NOW + 10 * 60_000})]:
        assert cm.parse(raw, DEFAULT, NOW).since == DEFAULT, raw


def test_bad_pending_ids_are_forgotten_and_recorded_once():
    c = cm.parse(json.dumps({"since": 5, "pending": ["dpl_ok", "a/../b"]}), DEFAULT, NOW)
    assert c.pending == ["dpl_ok"] and c.dropped == ["a/../b"]
    p = plan(c, unchecked={"dpl_ok"})
    assert [s for s, _ in p.rejections] == [cm.CURSOR] and "a/../b" in p.rejections[0][1]


def test_bound_defers_the_newest_and_since_stops_before_the_oldest_deferred():
    listed = [dep(f"dpl_{i}", DEFAULT + 10 + i) for i in range(5)]
    p = plan(cm.SensorCursor(DEFAULT), listed, max_runs=2, known={"dpl_0"})
    assert [d.id for d in p.requests] == ["dpl_1", "dpl_2"] and p.deferred == 2
    assert p.cursor.since == DEFAULT + 10 + 3 - 1 and p.cursor.pending == []


def test_since_never_passes_our_clock_or_a_rejected_entry():
    listed = [dep("dpl_soon", NOW + 60_000), dep("dpl_2100", 4_102_444_800_000)]
    p = plan(cm.SensorCursor(DEFAULT), listed)
    assert [d.id for d in p.requests] == ["dpl_soon"]  # within the clock-skew slack
    assert p.cursor.since == NOW
    assert len(p.rejections) == 1 and "dpl_2100" in p.rejections[0][1]
    # Listed again next tick: not recorded again.
    assert plan(p.cursor, listed, known={"dpl_soon"}).rejections == []


def test_refusals_count_up_then_drop_while_unchecked_ids_keep_their_count():
    c = cm.SensorCursor(DEFAULT, pending=["dpl_r", "dpl_u"], tries={"dpl_r": 3, "dpl_u": 2})
    p = plan(c, refused={"dpl_r": "HTTP 403"}, unchecked={"dpl_u"}, max_tries=5)
    assert p.cursor.tries == {"dpl_r": 4, "dpl_u": 2} and p.rejections == []
    assert set(p.cursor.pending) == {"dpl_r", "dpl_u"}
    p = plan(p.cursor, refused={"dpl_r": "HTTP 403"}, unchecked={"dpl_u"}, max_tries=5)
    assert p.cursor.pending == ["dpl_u"] and "5 tries" in p.rejections[0][1]


def test_intake_rows_are_acked_only_once_settled():
    intake = [(1, "dpl_req"), (2, "dpl_wait"), (3, "dpl_gone"), (4, "bad/id"), (5, "dpl_late")]
    fetched = {"dpl_req": dep("dpl_req", DEFAULT - 5), "dpl_late": dep("dpl_late", DEFAULT - 1)}
    p = plan(cm.SensorCursor(DEFAULT), fetched=fetched, unchecked={"dpl_wait"},
             gone={"dpl_gone"}, intake=intake, max_runs=1)
    assert [d.id for d in p.requests] == ["dpl_req"]
    assert sorted(p.cursor.acks) == [1, 3, 4]  # dpl_wait and the deferred dpl_late come back
    assert p.cursor.pending == ["dpl_late"]


def test_a_flood_of_junk_is_recorded_a_bounded_amount_per_tick():
    p = plan(cm.SensorCursor(DEFAULT), malformed=[f"entry {i}" for i in range(500)])
    assert len(p.rejections) == cm.MAX_REJECTIONS_PER_TICK
    assert p.not_recorded == 500 - cm.MAX_REJECTIONS_PER_TICK
    assert len(p.cursor.dumps()) < 5000
