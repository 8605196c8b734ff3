import time

import pytest

from atge_assets.lib.providers.base import (
    DeadlineExceeded,
    MalformedPayload,
    ProviderError,
)
from atge_assets.lib.providers.vercel import VercelClient, parse_list_item
from atge_assets_tests.conftest import TOKEN, fault


def client_for(sandbox, **kw) -> VercelClient:
    return VercelClient(TOKEN, sandbox.state.world.project_id, base_url=sandbox.base_url, **kw)


def test_list_follows_pagination(sandbox):
    for _ in range(4):
        sandbox.state.create(target="preview")
    with client_for(sandbox, page_limit=2) as c:
        page = c.list_deployments()
    ids = [d.id for d in page.deployments]
    assert sorted(ids) == sorted(d.id for d in sandbox.state.world.deployments)
    assert len(ids) == 5 and not page.malformed
    since = sandbox.state.world.deployments[3].created_ms
    with client_for(sandbox, page_limit=1) as c:
        assert {d.id for d in c.list_deployments(since_ms=since).deployments} == {
            d.id for d in sandbox.state.world.deployments[3:]}


def test_get_production_rollback_promote(sandbox):
    first = sandbox.state.world.production
    second = sandbox.state.create(target="production").id
    preview = sandbox.state.create(target="preview").id
    with client_for(sandbox) as c:
        d = c.get_deployment(second)
        assert d.id == second and d.state == "READY" and d.is_production
        assert d.url == f"{sandbox.base_url}/d/{second}"
        assert c.get_deployment(preview).target == "preview"
        assert c.production_deployment_id() == second
        c.rollback(first)
        assert c.production_deployment_id() == first
        c.promote(preview)
        assert c.production_deployment_id() == preview
        with pytest.raises(ProviderError) as err:
            c.get_deployment("dpl_nope")
        assert err.value.status == 404
    assert sandbox.state.status()["rollbacks"][0]["to"] == first


def test_bad_token_is_refused_and_never_echoed(sandbox):
    with VercelClient("wrong-token-xyz", "prj_atge_sandbox", base_url=sandbox.base_url) as c:
        with pytest.raises(ProviderError) as err:
            c.list_deployments()
    assert err.value.status == 403 and "wrong-token-xyz" not in str(err.value)


def test_rate_limit_honours_reset_and_5xx_retries(sandbox):
    slept: list[float] = []
    reset = str(int(time.time()) + 3)
    sandbox.state.api_faults.extend([fault(429, {"x-ratelimit-reset": reset}), fault(503),
                                     fault(502)])
    with client_for(sandbox, sleep=slept.append) as c:
        assert c.production_deployment_id() == sandbox.state.world.production
    assert len(slept) == 3
    assert 1.5 < slept[0] <= 3.1  # waited for the reset time, not a blind backoff
    assert slept[1:] == [1.0, 2.0]


def test_gives_up_after_max_attempts(sandbox):
    first = sandbox.state.world.production
    sandbox.state.create(target="production")
    sandbox.state.api_faults.extend([fault(500)] * 40)
    with client_for(sandbox, sleep=lambda s: None, max_attempts=3) as c:
        with pytest.raises(ProviderError, match="gave up after 3"):
            c.rollback(first)
    assert sandbox.state.status()["rollbacks"] == []


def test_rollback_whose_answer_was_lost_is_not_repeated(sandbox):
    first = sandbox.state.world.production
    sandbox.state.create(target="production")
    # The rollback happens, then the answer is a 504; a blind retry would roll back twice.
    sandbox.state.api_faults.append(fault(504, after=True))
    with client_for(sandbox, sleep=lambda s: None) as c:
        c.rollback(first)
        assert c.production_deployment_id() == first
    assert len(sandbox.state.status()["rollbacks"]) == 1


def test_rollback_retried_through_5xx_and_429_happens_once(sandbox):
    first = sandbox.state.world.production
    sandbox.state.create(target="production")
    sandbox.state.api_faults.extend([fault(503), fault(429, {"x-ratelimit-reset": "0"})])
    with client_for(sandbox, sleep=lambda s: None) as c:
        c.rollback(first)
    assert [r["to"] for r in sandbox.state.status()["rollbacks"]] == [first]


def test_huge_answer_is_refused_not_buffered(sandbox, monkeypatch):
    from atge_assets.lib.providers import vercel

    monkeypatch.setattr(vercel, "MAX_RESPONSE_BYTES", 10_000)
    page = {"deployments": [{"uid": f"dpl_{i}", "url": "x.vercel.app", "created": i,
                             "state": "READY"} for i in range(2000)]}
    sandbox.state.api_faults.append(fault(200, body=page))
    with client_for(sandbox) as c:
        with pytest.raises(MalformedPayload, match="more than 10000 bytes"):
            c.list_deployments()


def test_timeout_is_a_provider_error():
    import socket

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)  # accepts, never answers
    port = srv.getsockname()[1]
    try:
        with VercelClient("t", "p", base_url=f"http://127.0.0.1:{port}", timeout_s=0.2,
                          max_attempts=2, sleep=lambda s: None) as c:
            with pytest.raises(ProviderError, match="ReadTimeout|ConnectTimeout|Timeout"):
                c.production_deployment_id()
    finally:
        srv.close()


def test_malformed_entries_are_reported_not_dropped(sandbox):
    sandbox.state.api_faults.append(fault(200, body={"deployments": [
        {"uid": "dpl_ok", "url": "atge-ok.vercel.app", "created": 1, "state": "READY"},
        {"uid": "dpl_bad", "url": 5, "created": 1, "state": "READY"},
        "not an object",
        {"uid": "dpl_nocreated", "url": "x.vercel.app", "state": "READY"},
    ], "pagination": {"next": None}}))
    with client_for(sandbox) as c:
        page = c.list_deployments()
    assert [d.id for d in page.deployments] == ["dpl_ok"]
    assert page.deployments[0].url == "https://atge-ok.vercel.app"
    assert len(page.malformed) == 3 and "dpl_bad" in page.malformed[0]


@pytest.mark.parametrize("body", [{"nope": 1}, [1, 2], {"deployments": "x"}])
def test_malformed_page_is_an_error(sandbox, body):
    sandbox.state.api_faults.append(fault(200, body=body))
    with client_for(sandbox) as c:
        with pytest.raises(MalformedPayload):
            c.list_deployments()


@pytest.mark.parametrize("raw", [None, [], {"uid": ""}, {"uid": "a", "url": "u", "state": 3,
                                                          "created": 1},
                                  {"uid": "a", "url": "u", "state": "READY", "created": True}])
def test_parse_list_item_rejects(raw):
    with pytest.raises(MalformedPayload):
        parse_list_item(raw)


def test_ids_with_path_characters_are_refused(sandbox):
    with client_for(sandbox) as c:
        with pytest.raises(ValueError):
            c.rollback("../v9/projects")


@pytest.mark.parametrize("created", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_created_is_malformed_not_a_crash(sandbox, created):
    sandbox.state.api_faults.append(fault(200, body={"deployments": [
        {"uid": "dpl_odd", "url": "x.vercel.app", "created": created, "state": "READY"},
        {"uid": "dpl_ok", "url": "x.vercel.app", "created": 1, "state": "READY"},
    ], "pagination": {"next": None}}))
    with client_for(sandbox) as c:
        page = c.list_deployments()
    assert [d.id for d in page.deployments] == ["dpl_ok"]
    assert len(page.malformed) == 1 and "dpl_odd" in page.malformed[0]


def test_rate_limit_past_the_deadline_says_when_instead_of_sleeping(sandbox):
    slept: list[float] = []
    sandbox.state.api_faults.append(fault(429, {"x-ratelimit-reset": str(int(time.time()) + 3600)}))
    with client_for(sandbox, sleep=slept.append, deadline=time.monotonic() + 5) as c:
        with pytest.raises(ProviderError) as err:
            c.production_deployment_id()
    assert slept == []
    assert err.value.status == 429 and "rate limited" in str(err.value) and "UTC" in str(err.value)


def test_backoff_never_sleeps_past_the_deadline(sandbox):
    slept: list[float] = []
    sandbox.state.api_faults.extend([fault(503)] * 4)
    with client_for(sandbox, sleep=slept.append, deadline=time.monotonic() + 1.2) as c:
        with pytest.raises(DeadlineExceeded, match="HTTP 503"):
            c.production_deployment_id()
    assert slept == [0.5, 1.0]  # the 2 s pause would have outlived the budget


def test_no_call_starts_after_the_deadline(sandbox):
    with client_for(sandbox, deadline=time.monotonic() - 1) as c:
        with pytest.raises(DeadlineExceeded, match="before GET"):
            c.production_deployment_id()


@pytest.mark.parametrize("mode", ["body", "headers"])
def test_trickled_answer_is_cut_by_the_total_timeout(mode):
    from atge_assets_tests.deployments.hostile_api import hostile_api

    with hostile_api() as api:
        api.trickle, api.trickle_s = mode, 0.1  # a few kB: minutes in all
        api.add("dpl_a", 1)
        t0 = time.monotonic()
        with VercelClient(TOKEN, "p", base_url=api.url, timeout_s=5, total_timeout_s=1.0,
                          max_attempts=1) as c:
            with pytest.raises(ProviderError, match="took over 1 s; cut"):
                c.list_deployments()
        assert time.monotonic() - t0 < 10  # each byte came within the 5 s read timeout


def test_error_bodies_never_carry_the_token_or_a_configured_secret(sandbox):
    echo = {"error": {"message": f"Bearer {TOKEN} rejected; hook whsec_abc123 unknown"}}
    sandbox.state.api_faults.append(fault(400, body=echo))
    sandbox.state.api_faults.extend([fault(500, body=echo)] * 2)
    with client_for(sandbox, secrets=["whsec_abc123"], sleep=lambda s: None,
                    max_attempts=2) as c:
        with pytest.raises(ProviderError) as e400:
            c.list_deployments()
        with pytest.raises(ProviderError) as e500:
            c.list_deployments()
    for err in (e400.value, e500.value):
        assert "***" in str(err), str(err)
        assert TOKEN not in str(err) and "whsec_abc123" not in str(err)


@pytest.mark.parametrize("bad", ["dpl_a/../b", "d" * 300, "dpl_x\n", ""])
def test_deployment_ids_are_checked_before_any_call(sandbox, bad):
    with client_for(sandbox) as c:
        for call in (c.get_deployment, c.rollback, c.promote):
            with pytest.raises(ValueError, match="not a deployment id"):
                call(bad)
