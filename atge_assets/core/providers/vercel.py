"""A client for the subset of Vercel's REST API that releases need.

- list   GET  /v6/deployments?projectId=&target=&state=&since=&limit=  (pages via `until=pagination.next`)
- get    GET  /v13/deployments/{id}
- prod   GET  /v9/projects/{projectId}  (`targets.production.id` is the live deployment)
- roll   POST /v1/projects/{projectId}/rollback/{deploymentId}
- promo  POST /v10/projects/{projectId}/promote/{deploymentId}

Timeouts on every call; 429 waits until `x-ratelimit-reset` (epoch seconds) and 5xx backs off,
both capped. The token goes in the Authorization header only: never in an error message.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable
from urllib.parse import urlsplit

import httpx

from atge_assets.core.providers.base import (
    Deployment,
    DeploymentPage,
    MalformedPayload,
    ProviderError,
)

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.vercel.com"
MAX_PAGES = 50  # a runaway `next` chain must not keep a sensor tick busy forever


def parse_deployment(raw: Any) -> Deployment:
    """Turn one Vercel deployment object (v6 list item or v13 get) into a Deployment."""
    if not isinstance(raw, dict):
        raise MalformedPayload(f"deployment is a {type(raw).__name__}, not an object")
    dep_id = raw.get("uid") or raw.get("id")
    if not isinstance(dep_id, str) or not dep_id:
        raise MalformedPayload("deployment has no string 'uid'/'id'")
    url = raw.get("url")
    if not isinstance(url, str) or not url:
        raise MalformedPayload(f"deployment {dep_id}: no string 'url'")
    state = raw.get("readyState") or raw.get("state")
    if not isinstance(state, str):
        raise MalformedPayload(f"deployment {dep_id}: no string 'readyState'/'state'")
    created = raw.get("createdAt", raw.get("created"))
    if isinstance(created, bool) or not isinstance(created, (int, float)):
        raise MalformedPayload(f"deployment {dep_id}: 'created' is not a number")
    target = raw.get("target")
    if target is not None and not isinstance(target, str):
        raise MalformedPayload(f"deployment {dep_id}: 'target' is not a string")
    meta = raw.get("meta") if isinstance(raw.get("meta"), dict) else {}
    # Vercel gives a bare hostname; the sandbox gives a full URL so it can serve plain HTTP.
    base = url if "://" in url else f"https://{url}"
    return Deployment(dep_id, base.rstrip("/"), state.upper(), target or "preview", int(created),
                      {str(k): str(v) for k, v in meta.items()})


class VercelClient:
    def __init__(
        self,
        token: str,
        project_id: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        team_id: str | None = None,
        timeout_s: float = 10.0,
        max_attempts: int = 4,
        max_wait_s: float = 30.0,
        page_limit: int = 100,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
    ):
        if not token:
            raise ValueError("a Vercel token is required (set VERCEL_TOKEN)")
        if not project_id:
            raise ValueError("a Vercel project id is required (set VERCEL_PROJECT_ID)")
        self.project_id = project_id
        self.team_id = team_id or None
        self.base_url = base_url.rstrip("/")
        self.max_attempts = max_attempts
        self.max_wait_s = max_wait_s
        self.page_limit = page_limit
        self._sleep = sleep
        self._client = httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {token}", "user-agent": "atge-assets/0.1"},
            timeout=httpx.Timeout(timeout_s),
            transport=transport,
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> "VercelClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- HTTP with retries -------------------------------------------------------------------
    def _wait_for(self, resp: httpx.Response, attempt: int) -> float:
        if resp.status_code == 429:
            reset = resp.headers.get("x-ratelimit-reset")
            try:
                return min(self.max_wait_s, max(0.0, float(reset) - time.time()) + 0.05)
            except (TypeError, ValueError):
                pass
        return min(self.max_wait_s, 0.5 * 2**attempt)

    def _request(self, method: str, path: str, params: dict | None = None) -> Any:
        params = {k: v for k, v in (params or {}).items() if v is not None}
        if self.team_id:
            params["teamId"] = self.team_id
        last = ""
        for attempt in range(self.max_attempts):
            try:
                resp = self._client.request(method, path, params=params)
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__} calling {method} {path}"
                self._sleep(min(self.max_wait_s, 0.5 * 2**attempt))
                continue
            if resp.status_code == 429 or resp.status_code >= 500:
                last = f"HTTP {resp.status_code} from {method} {path}"
                if attempt + 1 < self.max_attempts:
                    self._sleep(self._wait_for(resp, attempt))
                continue
            if resp.status_code >= 400:
                raise ProviderError(f"HTTP {resp.status_code} from {method} {path}: "
                                    f"{_error_message(resp)}", status=resp.status_code)
            if not resp.content:
                return None
            try:
                return resp.json()
            except ValueError:
                raise MalformedPayload(f"{method} {path} answered non-JSON") from None
        raise ProviderError(f"gave up after {self.max_attempts} attempts: {last}")

    # -- API ---------------------------------------------------------------------------------
    def list_deployments(self, since_ms: int | None = None, target: str | None = None,
                         state: str | None = None) -> DeploymentPage:
        deployments: list[Deployment] = []
        malformed: list[str] = []
        until = None
        for _ in range(MAX_PAGES):
            body = self._request("GET", "/v6/deployments", {
                "projectId": self.project_id, "target": target, "state": state,
                "since": since_ms, "until": until, "limit": self.page_limit,
            })
            if not isinstance(body, dict) or not isinstance(body.get("deployments"), list):
                raise MalformedPayload("GET /v6/deployments: no 'deployments' list")
            for raw in body["deployments"]:
                try:
                    deployments.append(parse_deployment(raw))
                except MalformedPayload as exc:
                    malformed.append(str(exc))
            nxt = (body.get("pagination") or {}).get("next")
            if not isinstance(nxt, (int, float)) or isinstance(nxt, bool) or nxt == until:
                break
            until = int(nxt)
        else:
            log.warning("stopped following pagination after %d pages", MAX_PAGES)
        return DeploymentPage(deployments, malformed)

    def get_deployment(self, deployment_id: str) -> Deployment:
        return parse_deployment(self._request("GET", f"/v13/deployments/{_seg(deployment_id)}"))

    def production_deployment_id(self) -> str | None:
        body = self._request("GET", f"/v9/projects/{_seg(self.project_id)}")
        prod = ((body or {}).get("targets") or {}).get("production") or {}
        dep_id = prod.get("id") if isinstance(prod, dict) else None
        return dep_id if isinstance(dep_id, str) and dep_id else None

    def rollback(self, deployment_id: str) -> None:
        self._request("POST", f"/v1/projects/{_seg(self.project_id)}/rollback/{_seg(deployment_id)}")

    def promote(self, deployment_id: str) -> None:
        self._request("POST", f"/v10/projects/{_seg(self.project_id)}/promote/{_seg(deployment_id)}")

    def allowed_hosts(self) -> list[str]:
        """Vercel serves deployments on *.vercel.app; the API host itself is never a target."""
        host = urlsplit(self.base_url).hostname or ""
        if host == "api.vercel.com":
            return ["*.vercel.app"]
        # A self-hosted or sandbox API serves its deployments from its own host.
        return [host]


def _seg(value: str) -> str:
    if not value or "/" in value or "?" in value or "#" in value or ".." in value:
        raise ValueError(f"not a valid id: {value!r}")
    return value


def _error_message(resp: httpx.Response) -> str:
    try:
        err = resp.json().get("error", {})
        return str(err.get("message") or err.get("code") or "")[:200]
    except Exception:
        return resp.text[:200]
