"""The sandbox's Vercel API answers what Vercel's OpenAPI description promises: every path of the
excerpt the sandbox serves is called over loopback HTTP and its JSON validated against the
excerpt's response schema (see atge_assets_tests/lib/providers/vercel_spec.py)."""

import httpx
import pytest

from atge_assets_tests.conftest import TOKEN
from atge_assets_tests.lib.providers import vercel_spec as spec

LIST, PROJECT = "/v6/deployments", "/v9/projects/{idOrName}"
PROMOTE = "/v10/projects/{projectId}/promote/{deploymentId}"
# Operations of the excerpt the sandbox does not serve (yet): each must answer 404 (or 501 for
# a method it has no handler for), so whoever serves one must move it to the validated calls.
NOT_SERVED = {
    ("patch", PROJECT), ("delete", PROJECT),
    ("get", "/v1/projects/{idOrName}/rolling-release/config"),
    ("delete", "/v1/projects/{idOrName}/rolling-release/config"),
    ("patch", "/v1/projects/{idOrName}/rolling-release/config"),
    ("get", "/v1/projects/{idOrName}/rolling-release"),
    ("post", "/v1/projects/{idOrName}/rolling-release/approve-stage"),
    ("post", "/v1/projects/{idOrName}/rolling-release/complete"),
    ("patch", "/v1/projects/{idOrName}/protection-bypass"),
}
SERVED = {("get", LIST), ("get", spec.V13), ("get", PROJECT), ("post", PROMOTE)}


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


def call(sandbox, method: str, url: str) -> httpx.Response:
    return httpx.request(method.upper(), sandbox.base_url + url, timeout=10,
                         headers={"authorization": f"Bearer {TOKEN}"})


def test_the_excerpt_operations_are_all_accounted_for():
    assert SERVED | NOT_SERVED == set(spec.operations())
    assert not SERVED & NOT_SERVED


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


@pytest.mark.parametrize("method, path", sorted(NOT_SERVED))
def test_operations_not_served_say_so(sandbox, method, path):
    url = path.replace("{idOrName}", sandbox.state.world.project_id)
    assert call(sandbox, method, url).status_code in (404, 501)


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
