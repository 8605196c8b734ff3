"""The provider reads what Vercel's OpenAPI description says Vercel sends, and refuses anything
else with one line naming the field. Fixtures are built from the excerpt's schemas (and
validated against them), served through the real sandbox over loopback HTTP."""

import pytest

from atge_assets.lib.providers.base import MalformedPayload
from atge_assets.lib.providers.vercel import VercelClient, parse_deployment, parse_list_item
from atge_assets_tests.conftest import TOKEN, fault
from atge_assets_tests.lib.providers import vercel_spec as spec
from atge_assets_tests.lib.providers.vercel_spec import DROP

PID = "prj_atge_sandbox"
T = 1_760_000_000_000


def client_for(sandbox) -> VercelClient:
    return VercelClient(TOKEN, PID, base_url=sandbox.base_url, sleep=lambda s: None)


def item(**fields) -> dict:
    base = dict(uid="dpl_prod", url="atge-3ij3cxz9qr.vercel.app", created=T, projectId=PID,
                readyState="READY", state="READY", target="production")
    return spec.list_item(**{**base, **fields})


def full(**fields) -> dict:
    base = dict(id="dpl_prod", url="atge-3ij3cxz9qr.vercel.app", createdAt=T, projectId=PID,
                readyState="READY", status="READY", target="production")
    return spec.deployment(**{**base, **fields})


def test_the_fixtures_are_what_the_excerpt_describes():
    page = spec.list_page([item(), item(uid="dpl_p", target=None, readyState=DROP,
                                        state="BUILDING"), item(uid="dpl_s", target="staging")],
                          next_until=T - 1)
    assert spec.errors(page, "get", "/v6/deployments") == []
    assert spec.errors(full(target=None), "get", spec.V13) == []
    project = spec.project(id=PID, targets={"production": spec.target(id="dpl_live")})
    assert spec.errors(project, "get", "/v9/projects/{idOrName}") == []


def test_a_spec_shaped_list_is_read_page_by_page(sandbox):
    first = spec.list_page([
        item(meta={"githubCommitSha": "9f1c"}),
        # Vercel's list names the state twice; either alone is enough.
        item(uid="dpl_preview", target=None, readyState=DROP, state="BUILDING", created=T - 5),
        item(uid="dpl_staged", target="staging", state=DROP, created=T - 9),
    ], next_until=T - 9)
    second = spec.list_page([item(uid="dpl_older", target=DROP, created=T - 20)])
    sandbox.state.api_faults.extend([fault(200, body=first), fault(200, body=second)])
    with client_for(sandbox) as c:
        page = c.list_deployments()
    assert page.malformed == []
    got = {d.id: d for d in page.deployments}
    assert list(got) == ["dpl_prod", "dpl_preview", "dpl_staged", "dpl_older"]
    prod = got["dpl_prod"]
    assert (prod.url, prod.state, prod.target, prod.created_ms) == (
        "https://atge-3ij3cxz9qr.vercel.app", "READY", "production", T)
    assert prod.meta == {"githubCommitSha": "9f1c"}
    assert (got["dpl_preview"].state, got["dpl_preview"].target) == ("BUILDING", "preview")
    assert got["dpl_staged"].target == "preview" and got["dpl_older"].target == "preview"


def test_a_spec_shaped_deployment_and_project_are_read(sandbox):
    sandbox.state.api_faults.extend([
        fault(200, body=full(id="dpl_prev", target=None, readyState="QUEUED")),
        fault(200, body=spec.project(id=PID, targets={"production": spec.target(id="dpl_live")})),
        fault(200, body=spec.project(id=PID)),  # never deployed to production: no targets
        fault(200, body=spec.project(id=PID, targets={"production": None})),
    ])
    with client_for(sandbox) as c:
        dep = c.get_deployment("dpl_prev")
        assert (dep.id, dep.state, dep.target, dep.url) == (
            "dpl_prev", "QUEUED", "preview", "https://atge-3ij3cxz9qr.vercel.app")
        assert [c.production_deployment_id() for _ in range(3)] == ["dpl_live", None, None]


def test_the_sandbox_itself_is_read(sandbox):
    """Its answers validate against the excerpt (sandbox/test_vercel_payloads.py); here the
    provider reads them, the sandbox's full http URLs included."""
    preview = sandbox.state.create(target="preview", build_s=600)
    with client_for(sandbox) as c:
        listed = {d.id: d for d in c.list_deployments().deployments}
        fetched = c.get_deployment(preview.id)
    assert listed[preview.id] == fetched
    assert (fetched.state, fetched.target, fetched.url) == (
        "BUILDING", "preview", f"{sandbox.base_url}/d/{preview.id}")


LIST_REFUSALS = [
    (dict(uid=DROP), "deployment has no string 'uid' (got None)"),
    (dict(uid="dpl_a/../b"), "'uid' is not a deployment id"),
    (dict(url=DROP), "deployment dpl_prod: 'url' is None, not a host"),
    (dict(url="ftp://atge.vercel.app"), "'url' 'ftp://atge.vercel.app' is not a host or an http"),
    (dict(url="atge x.vercel.app"), "'url' 'atge x.vercel.app' is not a host name"),
    (dict(url="https://"), "is not a host or an http(s) URL"),
    (dict(url="http://h:99999999"), "is not a host or an http(s) URL"),
    # `createdAt` is optional in a list item; `created` is what the description requires.
    (dict(created=DROP, createdAt=T), "'created' is None, not a number"),
    (dict(created="yesterday"), "'created' is 'yesterday', not a number"),
    (dict(readyState="ready", state=DROP), "'readyState' is 'ready', not one of QUEUED"),
    (dict(readyState=DROP, state=DROP), "no 'readyState' or 'state'"),
    (dict(state="ERROR"), "'readyState' READY and 'state' ERROR disagree"),
    (dict(target="preview"), "'target' is 'preview', not 'production', 'staging' or null"),
    (dict(projectId="prj_someone_else"), "'projectId' is 'prj_someone_else', not 'prj_atge"),
    (dict(meta=["a"]), "'meta' is a list, not an object"),
]


@pytest.mark.parametrize("fields, why", LIST_REFUSALS)
def test_a_list_entry_not_in_the_described_shape_is_refused_in_one_line(fields, why):
    with pytest.raises(MalformedPayload) as err:
        parse_list_item(item(**fields), PID)
    assert why in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("fields, why", [
    (dict(id=DROP, uid="dpl_prod"), "deployment has no string 'id'"),
    (dict(createdAt=DROP, created=T), "'createdAt' is None, not a number"),
    (dict(readyState=DROP, state="READY"), "no 'readyState'"),
    (dict(readyState="DONE"), "'readyState' is 'DONE', not one of"),
    (dict(url="atge.vercel.app/x"), "is not a host name"),
])
def test_a_deployment_not_in_the_described_shape_is_refused(fields, why):
    with pytest.raises(MalformedPayload) as err:
        parse_deployment(full(**fields), PID)
    assert why in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("key", ["uid", "url", "created", "readyState", "state", "target",
                                 "projectId", "meta"])
@pytest.mark.parametrize("value", [None, 0, -1.5, True, "", "x\ny", [], {}, [1], {"a": [1]}])
def test_any_value_in_any_field_is_an_entry_or_a_refusal_never_a_crash(key, value):
    try:
        parse_list_item(item(**{key: value}), PID)
    except MalformedPayload as exc:
        assert "\n" not in str(exc)


@pytest.mark.parametrize("body, why", [
    ({"deployments": []}, "GET /v6/deployments: no 'pagination' object"),
    ({"deployments": [], "pagination": [1]}, "no 'pagination' object"),
    ({"deployments": [], "pagination": {"count": 0, "next": "soon", "prev": None}},
     "'pagination.next' is 'soon', not a timestamp or null"),
    ({"pagination": {"count": 0, "next": None, "prev": None}}, "no 'deployments' list"),
])
def test_a_page_not_in_the_described_shape_is_refused(sandbox, body, why):
    sandbox.state.api_faults.append(fault(200, body=body))
    with client_for(sandbox) as c, pytest.raises(MalformedPayload) as err:
        c.list_deployments()
    assert why in str(err.value)


def test_refused_entries_are_reported_beside_the_good_ones(sandbox):
    sandbox.state.api_faults.append(fault(200, body=spec.list_page([
        item(), item(uid="dpl_other_project", projectId="prj_x"), item(uid="dpl_t", target="x")])))
    with client_for(sandbox) as c:
        page = c.list_deployments()
    assert [d.id for d in page.deployments] == ["dpl_prod"]
    assert [m.split(":")[0] for m in page.malformed] == ["deployment dpl_other_project",
                                                         "deployment dpl_t"]


@pytest.mark.parametrize("body, why", [
    ([], "the project is a list, not an object"),
    ({"id": PID, "targets": ["dpl_live"]}, "'targets' is a list, not an object"),
    ({"id": PID, "targets": {"production": "dpl_live"}}, "'targets.production' is 'dpl_live'"),
    ({"id": PID, "targets": {"production": {"id": 5}}}, "'targets.production.id' is 5, not a"),
])
def test_a_project_not_in_the_described_shape_is_refused(sandbox, body, why):
    sandbox.state.api_faults.append(fault(200, body=body))
    with client_for(sandbox) as c, pytest.raises(MalformedPayload) as err:
        c.production_deployment_id()
    assert f"GET /v9/projects/{PID}: {why}" in str(err.value)


def test_a_get_answering_another_deployment_is_refused(sandbox):
    sandbox.state.api_faults.append(fault(200, body=full(id="dpl_someone_else")))
    with client_for(sandbox) as c, pytest.raises(MalformedPayload,
                                                 match="answered deployment 'dpl_someone_else'"):
        c.get_deployment("dpl_prod")
