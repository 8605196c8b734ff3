"""The sandbox's Vercel API answers what Vercel's OpenAPI description promises: every operation
of the excerpt is served, called over loopback HTTP and its JSON validated against the
excerpt's response schema (see atge_assets_tests/lib/providers/vercel_spec.py)."""

import httpx
import pytest

from atge_assets_tests.conftest import TOKEN
from atge_assets_tests.lib.providers import vercel_spec as spec

LIST, PROJECT = "/v6/deployments", "/v9/projects/{idOrName}"
PROMOTE = "/v10/projects/{projectId}/promote/{deploymentId}"
RR = "/v1/projects/{idOrName}/rolling-release"
RR_CONFIG, APPROVE, COMPLETE = spec.RR_CONFIG, RR + "/approve-stage", RR + "/complete"
BYPASS = "/v1/projects/{idOrName}/protection-bypass"
STAGES = [{"targetPercentage": 10}, {"targetPercentage": 50}, {"targetPercentage": 100}]


@pytest.fixture
def world(sandbox):
    """Every kind of deployment the sandbox has: rolled-away and live production, READY,
    building and unreachable previews, and a promoted preview that is live now."""
    st = sandbox.state
    ids = {"first": st.world.production}
    ids["second"] = st.create(target="production").id
    ids["preview"] = st.create(target="preview").id
    ids["building"] = st.create(target="preview", build_s=600).id
    ids["refusing"] = st.create(target="preview", mode="refuse").id
    ids["promoted"] = st.create(target="preview").id
    st.promote(ids["promoted"])
    return ids


def calls(pid: str, ids: dict) -> list[tuple[str, str, str]]:
    """(method, excerpt path whose schema applies, URL to call)."""
    out = [("get", LIST, url) for url in (
        "/v6/deployments", f"/v6/deployments?projectId={pid}&limit=2",
        "/v6/deployments?target=preview", "/v6/deployments?state=BUILDING",
        "/v6/deployments?projectId=prj_someone_else",
        # Not in the excerpt, but Vercel's SDK lists through it: the v6 shape is what it gets.
        "/v7/deployments", f"/v7/deployments?projectId={pid}&limit=3")]
    out += [("get", spec.V13, f"/v13/deployments/{dep}") for dep in ids.values()]
    out += [("get", PROJECT, f"/v9/projects/{pid}"),
            ("post", PROMOTE, f"/v10/projects/{pid}/promote/{ids['preview']}")]
    return out


def call(sandbox, method: str, url: str, body: dict | None = None) -> httpx.Response:
    return httpx.request(method.upper(), sandbox.base_url + url, timeout=10, json=body,
                         headers={"authorization": f"Bearer {TOKEN}"})


def test_rolling_release_answers_validate_against_the_excerpt(sandbox):
    """Off, configured, active at each stage, complete, and aborted by a rollback."""
    st, pid = sandbox.state, sandbox.state.world.project_id
    rr, config = RR.replace("{idOrName}", pid), RR_CONFIG.replace("{idOrName}", pid)
    answers = []

    def check(method, path, url, body=None):
        r = call(sandbox, method, url, body)
        assert r.status_code == 200, (url, r.text[:300])
        assert spec.errors(r.json(), method, path) == [], url
        answers.append(r.json()["rollingRelease"])
        return r.json()["rollingRelease"]

    assert check("get", RR_CONFIG, config) is None and check("get", RR, rr) is None
    st.configure_rolling([{"targetPercentage": 5}, {"targetPercentage": 50, "duration": 10},
                          {"targetPercentage": 100}], canary_header=True)
    assert [s["targetPercentage"] for s in check("get", RR_CONFIG, config)["stages"]] == [5, 50,
                                                                                         100]
    first = st.world.production
    canary = st.create(target="production").id
    active = check("get", RR, rr)
    assert (active["state"], active["activeStage"]["index"]) == ("ACTIVE", 0)
    assert active["currentDeployment"]["id"] == first
    moved = check("post", APPROVE, APPROVE.replace("{idOrName}", pid),
                  {"canaryDeploymentId": canary, "nextStageIndex": 1})
    assert moved["activeStage"]["index"] == 1 and moved["nextStage"]["isFinalStage"]
    done = check("post", COMPLETE, COMPLETE.replace("{idOrName}", pid),
                 {"canaryDeploymentId": canary})
    assert done["state"] == "COMPLETE" and done["activeStage"] is None
    aborted_canary = st.create(target="production").id
    st.rollback(canary)
    aborted = check("get", RR, rr)
    assert (aborted["state"], aborted["canaryDeployment"]["id"]) == ("ABORTED", aborted_canary)
    assert len(answers) == 7


def every_operation(sandbox, ids: dict) -> dict:
    """One call of each operation, keyed (method, excerpt path): (URL, JSON body or None, or a
    function of `ids` giving it). In this order, since some change the project: a production
    deployment is made once the config is set (the release the stage calls act on), and the
    deletion comes last."""
    pid = sandbox.state.world.project_id
    p = {"{idOrName}": pid, "{projectId}": pid, "{deploymentId}": ids["preview"],
         "{idOrUrl}": ids["second"]}

    def url(path):
        for k, v in p.items():
            path = path.replace(k, v)
        return path

    return {
        ("get", LIST): (url(LIST), None),
        ("get", spec.V13): (url(spec.V13), None),
        ("get", PROJECT): (url(PROJECT), None),
        ("patch", PROJECT): (url(PROJECT), {"framework": None, "directoryListing": True}),
        ("patch", RR_CONFIG): (url(RR_CONFIG), {"enabled": True, "stages": STAGES,
                                                "advancementType": "manual-approval"}),
        ("get", RR_CONFIG): (url(RR_CONFIG), None),
        ("post", PROMOTE): (url(PROMOTE), None),
        ("get", RR): (url(RR), None),
        ("post", APPROVE): (url(APPROVE), lambda ids: {"canaryDeploymentId": ids["canary"],
                                                       "nextStageIndex": 1}),
        ("post", COMPLETE): (url(COMPLETE), lambda ids: {"canaryDeploymentId": ids["canary"]}),
        ("delete", RR_CONFIG): (url(RR_CONFIG), None),
        ("patch", BYPASS): (url(BYPASS), {"generate": {"secret": "a" * 32}}),
        ("delete", PROJECT): (url(PROJECT), None),
    }


def test_every_operation_of_the_excerpt_is_served_and_validates(sandbox, world):
    """Fails for an operation the excerpt gains and the sandbox does not serve (or this table
    does not call): every (method, path) is called, answered with a status the excerpt lists,
    and its body validated against the excerpt's schema for that status."""
    ops = every_operation(sandbox, world)
    assert set(ops) == set(spec.operations()), "operations of the excerpt not called here"
    answers = {}
    for (method, path), (url, body) in ops.items():
        r = call(sandbox, method, url, body(world) if callable(body) else body)
        assert r.status_code in spec.statuses(method, path), (method, url, r.status_code,
                                                              r.text[:300])
        assert r.status_code < 300, (method, url, r.text[:300])
        if r.status_code != 204:
            assert spec.errors(r.json(), method, path, r.status_code) == [], (method, url)
            answers[method, path] = r.json()
        if (method, path) == ("patch", RR_CONFIG):
            world["canary"] = sandbox.state.create(target="production").id
    assert answers["get", RR]["rollingRelease"]["canaryDeployment"]["id"] == world["canary"]
    # What they did, beyond answering: the checks above would pass for a no-op.
    assert sandbox.state.world.project_settings == {"framework": None, "directoryListing": True}
    assert sandbox.state.world.rolling_config is None
    assert sandbox.state.world.rolling_release["state"] == "COMPLETE"
    assert "a" * 32 in sandbox.bypass_secrets
    assert call(sandbox, "get", LIST).status_code == 404  # the project is deleted


def test_the_rolling_release_config_is_set_and_removed_through_the_api(sandbox):
    pid = sandbox.state.world.project_id
    config = RR_CONFIG.replace("{idOrName}", pid)
    r = call(sandbox, "patch", config, {"enabled": True, "stages": STAGES + [{}]})
    assert r.status_code == 400 and sandbox.state.world.rolling_config is None
    assert call(sandbox, "patch", config, {"enabled": True}).status_code == 400
    set_ = call(sandbox, "patch", config, {"enabled": True, "stages": STAGES,
                                           "canaryResponseHeader": True}).json()
    assert [s["targetPercentage"] for s in set_["rollingRelease"]["stages"]] == [10, 50, 100]
    assert set_ == call(sandbox, "get", config).json()
    # A release in flight is not touched by the config: only the next ones are.
    canary = sandbox.state.create(target="production").id
    assert call(sandbox, "patch", config, {"enabled": False}).json() == {"rollingRelease": None}
    rr = call(sandbox, "get", RR.replace("{idOrName}", pid)).json()["rollingRelease"]
    assert (rr["state"], rr["canaryDeployment"]["id"]) == ("ACTIVE", canary)
    call(sandbox, "patch", config, {"enabled": True, "stages": STAGES})
    assert call(sandbox, "delete", config).json() == {"rollingRelease": None}
    assert call(sandbox, "get", config).json() == {"rollingRelease": None}


def test_the_raw_patch_config_schema_refuses_every_right_answer():
    """Why vercel_spec validates PATCH .../config against its typed branch: read as written,
    the `oneOf` refuses both a right "off" and a right config. Should Vercel fix it, this fails
    and the liberty can go."""
    from openapi_schema_validator import OAS30ReadValidator

    schema = spec.raw_document()["paths"][RR_CONFIG]["patch"]["responses"]["200"]["content"][
        "application/json"]["schema"]
    for right in ({"rollingRelease": None},
                  {"rollingRelease": {"stages": [{"targetPercentage": 5}]}}):
        assert not OAS30ReadValidator(schema).is_valid(right)
        assert spec.errors(right, "patch", RR_CONFIG) == []
    wrong = {"rollingRelease": {"stages": [{"targetPercentage": "5"}]}}
    assert spec.errors(wrong, "patch", RR_CONFIG)


def test_protection_bypass_secrets_are_added_and_revoked(tmp_path):
    from atge_assets.sandbox.server import SandboxServer
    from atge_assets.sandbox.state import SandboxState

    first = "f" * 32
    server = SandboxServer(("127.0.0.1", 0), SandboxState(tmp_path / "s.json"), token=TOKEN,
                           protection_bypass=first)
    server.start_background()
    try:
        pid, dep = server.state.world.project_id, server.state.world.production
        url = BYPASS.replace("{idOrName}", pid)

        def health(secret):
            return httpx.get(f"{server.base_url}/d/{dep}/api/health", timeout=10,
                             headers={"x-vercel-protection-bypass": secret}).status_code

        made = call(server, "patch", url, {}).json()["protectionBypass"]
        (second,) = set(made) - {first}
        assert len(second) == 32 and health(second) == health(first) == 200
        assert call(server, "patch", url, {"revoke": {"secret": first, "regenerate": False}}
                    ).json()["protectionBypass"].keys() == {second}
        assert health(first) == 401 and health(second) == 200
        assert call(server, "patch", url, {"generate": {"secret": "short"}}).status_code == 400
        assert call(server, "patch", url, {"revoke": {"secret": first, "regenerate": True}}
                    ).status_code == 404
    finally:
        server.shutdown()
        server.server_close()


def test_every_answer_validates_against_the_excerpt(sandbox, world):
    answers = []
    for method, path, url in calls(sandbox.state.world.project_id, world):
        r = call(sandbox, method, url)
        assert r.status_code in spec.statuses(method, path), (url, r.status_code, r.text[:300])
        body = r.json()
        assert spec.errors(body, method, path, r.status_code) == [], url
        answers.append((url, body))
    # The bodies above must hold the cases worth validating, or they prove little.
    items = [d for url, b in answers if url.startswith(("/v6", "/v7")) for d in b["deployments"]]
    assert {d["readyState"] for d in items} == {"READY", "BUILDING"}
    assert {d["target"] for d in items} == {"production", None}
    assert {d.get("readySubstate") for d in items} == {"PROMOTED", "STAGED", None}
    assert any(b["pagination"]["next"] for url, b in answers if "limit=2" in url)
    assert any(b["deployments"] == [] for url, b in answers if "someone_else" in url)
    full = [b for url, b in answers if url.startswith("/v13/")]
    assert {b["id"] for b in full} == set(world.values())
    project = next(b for url, b in answers if url.startswith("/v9/"))
    assert project["targets"]["production"]["id"] == world["promoted"]


def test_v7_lists_what_v6_lists(sandbox, world):
    v6, v7 = (call(sandbox, "get", f"/{v}/deployments?limit=100").json() for v in ("v6", "v7"))
    assert [d["uid"] for d in v7["deployments"]] == [d["uid"] for d in v6["deployments"]]
    assert len(v6["deployments"]) == len(world)


def test_the_fields_the_issue_names_are_sent(sandbox, world):
    item = call(sandbox, "get", "/v6/deployments").json()["deployments"][0]
    assert {"projectId", "type", "creator", "inspectorUrl"} <= item.keys()
    full = call(sandbox, "get", f"/v13/deployments/{world['second']}").json()
    assert {"build", "env", "projectSettings", "isInConcurrentBuildsQueue"} <= full.keys()


def test_the_validator_refuses_the_old_sandbox_shapes(sandbox, world):
    """What the sandbox sent before this check: a test that cannot fail proves nothing."""
    old_item = {"uid": world["preview"], "name": "atge", "url": "http://127.0.0.1/d/x",
                "created": 1, "createdAt": 1, "state": "READY", "readyState": "READY",
                "target": "preview", "meta": {"slowdown": "1.0"}}
    found = "\n".join(spec.errors(spec.list_page([old_item]), "get", LIST))
    for name in ("projectId", "type", "creator", "inspectorUrl", "'preview' is not one of"):
        assert name in found, found
    old_project = {"id": "prj", "name": "atge", "targets": {"production": {"id": world["first"]}}}
    found = "\n".join(spec.errors(old_project, "get", PROJECT))
    assert "accountId" in found and "targets/production: 'createdAt'" in found, found
    good = call(sandbox, "get", f"/v13/deployments/{world['second']}").json()
    for field in ("build", "isInConcurrentBuildsQueue", "readyState"):
        broken = {k: v for k, v in good.items() if k != field}
        assert f"'{field}' is a required property" in "\n".join(
            spec.errors(broken, "get", spec.V13))
