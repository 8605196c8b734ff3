"""Rolling releases as Vercel's OpenAPI description shapes them: parsed from payloads built from
the excerpt's schemas, refused with one line naming the field otherwise, and driven over loopback
against the sandbox with retries that never repeat an action that took effect."""

import pytest

from atge_assets.lib.providers.base import MalformedPayload
from atge_assets.lib.providers.vercel import (
    VercelClient,
    parse_rolling_release,
    parse_rolling_release_config,
)
from atge_assets_tests.conftest import TOKEN, fault
from atge_assets_tests.lib.providers import vercel_spec as spec

RR = "/v1/projects/{idOrName}/rolling-release"


def _stage(index, pct, final=False):
    return {"index": index, "isFinalStage": final, "targetPercentage": pct,
            "requireApproval": True, "duration": None}


def release(**fields) -> dict:
    """A GET .../rolling-release answer built from the excerpt's schema, with `fields` set."""
    body = spec.example(spec.response_schema("get", RR))
    inner = spec._with(spec.response_schema("get", RR)["properties"]["rollingRelease"], {})
    dep = spec._with(spec.response_schema("get", RR)["properties"]["rollingRelease"]
                     ["properties"]["canaryDeployment"], {})
    stages = [_stage(0, 5), _stage(1, 100, True)]
    inner.update(currentDeployment=dict(dep, id="dpl_current"), canaryDeployment=dict(
        dep, id="dpl_canary"), stages=stages, activeStage=stages[0], nextStage=stages[1],
        state="ACTIVE", advancementType="manual-approval")
    inner.update(fields)
    body["rollingRelease"] = inner
    assert spec.errors(body, "get", RR) == []
    return body


def test_a_spec_shaped_release_is_read():
    rr = parse_rolling_release(release())
    assert (rr.state, rr.advancement) == ("ACTIVE", "manual-approval")
    assert (rr.current_id, rr.canary_id) == ("dpl_current", "dpl_canary")
    assert rr.active.index == 0 and rr.active.target_percentage == 5.0
    assert rr.next.is_final and [s.index for s in rr.stages] == [0, 1]
    assert parse_rolling_release({"rollingRelease": None}) is None


def test_the_schema_example_of_the_config_is_read():
    body = {"rollingRelease": {"target": "production", "stages": [
        {"targetPercentage": 10, "requireApproval": True}, {"targetPercentage": 100}]}}
    assert spec.errors(body, "get", RR + "/config") == []
    stages = parse_rolling_release_config(body)
    assert [(s.index, s.target_percentage, s.require_approval, s.is_final) for s in stages] == [
        (0, 10.0, True, False), (1, 100.0, False, True)]
    assert parse_rolling_release_config({"rollingRelease": None}) is None
    assert parse_rolling_release_config({"rollingRelease": {"target": "production"}}) is None


@pytest.mark.parametrize("fields, words", [
    ({"state": "PAUSED"}, "'state'"),
    ({"advancementType": "yolo"}, "'advancementType'"),
    ({"canaryDeployment": {"id": "../etc"}}, "'canaryDeployment.id'"),
    ({"activeStage": {"index": 0, "isFinalStage": False, "targetPercentage": 500}},
     "'targetPercentage'"),
    ({"stages": [{"index": "one", "isFinalStage": True, "targetPercentage": 100}]}, "'index'"),
    ({"stages": [{"index": 0, "isFinalStage": "no", "targetPercentage": 100}]}, "'isFinalStage'"),
    ({"stages": "all"}, "'stages'"),
])
def test_what_is_not_a_release_is_refused_naming_the_field(fields, words):
    body = release()
    body["rollingRelease"].update(fields)
    with pytest.raises(MalformedPayload, match=words):
        parse_rolling_release(body)
    with pytest.raises(MalformedPayload, match="rollingRelease"):
        parse_rolling_release({"deployments": []})


def _client(sandbox):
    return VercelClient(TOKEN, sandbox.state.world.project_id, base_url=sandbox.base_url,
                        sleep=lambda s: None)


def test_stages_are_approved_completed_and_aborted_over_http(sandbox):
    st = sandbox.state
    st.configure_rolling([{"targetPercentage": 5}, {"targetPercentage": 25},
                          {"targetPercentage": 100}])
    first = st.world.production
    canary = st.create(target="production").id
    with _client(sandbox) as c:
        assert [s.target_percentage for s in c.rolling_release_config()] == [5, 25, 100]
        # The answer is lost after the stage moved on: the retry sees it and does not repeat.
        st.api_faults.append(fault(502, after=True))
        c.approve_stage(canary, 1)
        assert c.rolling_release().active.index == 1
        c.complete_rolling_release(canary)
        assert c.rolling_release().state == "COMPLETE" and st.world.production == canary
        slow = st.create(target="production").id
        st.api_faults.append(fault(503, after=True))
        c.abort_rolling_release(slow, canary)
        rr = c.rolling_release()
    assert (rr.state, rr.canary_id) == ("ABORTED", slow)
    assert st.world.production == canary != first
    assert [e["from"] for e in st.status()["rollbacks"]] == [slow]
