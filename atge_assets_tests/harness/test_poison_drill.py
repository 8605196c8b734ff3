"""The poisoned-list drill (issue 15): the sandbox's poison control answered through the real
Vercel client, and (slow) the whole system (`atge up`) still benchmarking the next real
deployment after an entry from 2100, a NaN time and a pending id answering 403.
"""

import json
import math
import time
import uuid

import httpx
import pytest

from atge_assets.deployments.history import DeploymentHistory
from atge_assets.harness import drills, stack
from atge_assets.lib.providers.base import DeadlineExceeded, ProviderError
from atge_assets.lib.providers.vercel import VercelClient
from atge_assets.sandbox import poison
from atge_assets_tests.conftest import TOKEN


def control(sandbox, body: dict | None = None) -> httpx.Response:
    if body is None:
        return httpx.get(sandbox.base_url + poison.PATH, timeout=10)
    return httpx.post(sandbox.base_url + poison.PATH, json=body, timeout=10)


@pytest.fixture
def client(sandbox):
    c = VercelClient(TOKEN, "prj_atge_sandbox", base_url=sandbox.base_url, timeout_s=5.0,
                     max_attempts=1)
    yield c
    c.close()


def listed(client) -> tuple[list[str], list[str]]:
    page = client.list_deployments(since_ms=0)
    return [d.id for d in page.deployments], page.malformed


def test_no_poison_lists_only_real_deployments(sandbox, client):
    real = sandbox.state.world.deployments[0].id
    assert control(sandbox).json() == {"poison": None}
    assert listed(client) == ([real], [])


@pytest.mark.parametrize(("kind", "shows"), [
    ("future", "dpl_poison_future"),
    ("nan", "NaN"),
    ("infinity", "Infinity"),
    ("bad_ids", "dpl_a/../b"),
])
def test_entry_poisons_ride_along_with_the_real_list(sandbox, client, kind, shows):
    real = sandbox.state.world.deployments[0].id
    assert control(sandbox, {"kind": kind}).status_code == 201
    # As sent on the wire: NaN and Infinity are spelled as JavaScript and Python emit them.
    raw = httpx.get(sandbox.base_url + "/v6/deployments", timeout=10,
                    headers={"authorization": f"Bearer {TOKEN}"}).text
    assert shows in raw
    ids, malformed = listed(client)
    assert real in ids
    if kind == "future":
        [future] = [d for d in client.list_deployments(since_ms=0).deployments
                    if d.id == "dpl_poison_future"]
        assert future.created_ms == poison.YEAR_2100_MS  # well-formed; the sensor's to refuse
    else:
        assert ids == [real] and malformed  # the client already refuses these
    assert control(sandbox).json()["poison"]["answers"] >= 2
    assert control(sandbox, {"kind": None}).json() == {"poison": None}
    assert listed(client) == ([real], [])


def test_big_page_is_one_page_of_foreign_entries(sandbox, client):
    control(sandbox, {"kind": "big_page"})
    ids, malformed = listed(client)
    assert ids == [sandbox.state.world.deployments[0].id]
    assert len(malformed) == poison.BIG_PAGE and "projectId" in malformed[0]


def test_forbidden_entry_is_pending_until_since_passes_it_then_403(sandbox, client):
    control(sandbox, {"kind": "forbidden"})
    page = client.list_deployments(since_ms=0)
    [locked] = [d for d in page.deployments if d.id == poison.LOCKED_ID]
    assert locked.state == "BUILDING"
    assert poison.LOCKED_ID not in [
        d.id for d in client.list_deployments(since_ms=locked.created_ms + 1).deployments]
    with pytest.raises(ProviderError) as refused:
        client.get_deployment(poison.LOCKED_ID)
    assert refused.value.status == 403
    real = sandbox.state.world.deployments[0].id
    assert client.get_deployment(real).id == real  # only that one id is refused


def test_rate_limit_lifts_by_itself(sandbox, client):
    assert control(sandbox, {"kind": "rate_limit", "seconds": 1.0}).status_code == 201
    with pytest.raises(ProviderError) as limited:
        client.list_deployments(since_ms=0)
    assert limited.value.status == 429
    time.sleep(1.2)
    assert listed(client)[0] == [sandbox.state.world.deployments[0].id]
    assert control(sandbox).json()["poison"]["active"] is False


def test_slow_answer_meets_the_callers_deadline_then_flows_when_cleared(sandbox, client):
    control(sandbox, {"kind": "slow"})
    client.deadline = time.monotonic() + 1.5
    t0 = time.monotonic()
    with pytest.raises((DeadlineExceeded, ProviderError, httpx.HTTPError)):
        client.list_deployments(since_ms=0)
    assert time.monotonic() - t0 < 15  # bounded by the deadline, not by the trickle
    client.deadline = None
    control(sandbox, {"kind": None})
    assert listed(client)[0] == [sandbox.state.world.deployments[0].id]


@pytest.mark.parametrize("body", [{"kind": "nope"}, {"kind": "nan", "seconds": -1},
                                  {"kind": "nan", "seconds": True}, {"kind": "nan",
                                                                     "seconds": 1e9}])
def test_bad_poison_requests_are_refused_in_one_line(sandbox, body):
    r = control(sandbox, body)
    assert r.status_code == 400 and "\n" not in r.json()["error"]["message"]
    assert control(sandbox).json() == {"poison": None}


def test_nan_spelling_matches_the_hostile_api():
    # hostile_api.py sends Python's json spelling too: one notion of the poison across tests.
    assert json.dumps({"t": math.nan, "u": math.inf}) == '{"t": NaN, "u": Infinity}'


@pytest.mark.slow
def test_the_whole_system_still_benchmarks_after_each_poison(tmp_path):
    """`atge up` (SQLite, the real daemon): after an entry from 2100, a NaN time and a pending id
    answering 403, the next real deployment is benchmarked, its run requested within two sensor
    intervals, the poison recorded in `rejected_inputs`, and no sensor tick fails."""
    home = tmp_path / "home"
    s = stack.start(home, extra_env={"ATGE_SENSOR_INTERVAL_S": "5",
                                     "VERCEL_AUTOMATION_BYPASS_SECRET": uuid.uuid4().hex})
    store = None
    try:
        s.wait_for(s.ui_ready, 180)
        store = DeploymentHistory(f"sqlite:///{home / 'history.sqlite'}")
        first = s.status()["production"]
        s.wait_for(lambda: store.decisions_for(first), 240)
        for kind in ("future", "nan", "forbidden"):
            out = drills.poison_drill(s, store, kind, interval_s=5, timeout_s=240)
            assert out["benchmarked"] and out["runs_for_deployment"] == 1, out
            assert out["runs_requested"] == 1, out
            assert out["rejected_inputs"] >= 1, out
            assert out["ticks"].get("FAILURE", 0) == 0, out
            assert out["poisoned_answers"], out
            # Generous over the goal (two intervals): a shared machine's ticks run late; a
            # blinded sensor never requests it at all.
            assert out["requested_s"] is not None and out["requested_s"] < 60, out
    finally:
        if store:
            store.dispose()
        code = s.stop()
    assert code == 0, s.log_path.read_text()[-3000:]
