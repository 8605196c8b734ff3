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

import json
import logging
import time
from typing import Any, Callable
from urllib.parse import urlsplit

import httpx

from atge_assets.lib.providers.base import (
    Deployment,
    DeploymentPage,
    MalformedPayload,
    ProviderError,
)

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.vercel.com"
MAX_PAGES = 50  # a runaway `next` chain must not keep a sensor tick busy forever
MAX_RESPONSE_BYTES = 8 << 20


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
    def _wait_for(self, status: int, headers: httpx.Headers, attempt: int) -> float:
        if status == 429:
            reset = headers.get("x-ratelimit-reset")
            try:
                return min(self.max_wait_s, max(0.0, float(reset) - time.time()) + 0.05)
            except (TypeError, ValueError):
                pass
        return min(self.max_wait_s, 0.5 * 2**attempt)

    def _request(self, method: str, path: str, params: dict | None = None,
                 done: Callable[[], bool] | None = None) -> Any:
        """One API call with retries. For a call that changes state, `done` tells whether an
        earlier attempt that failed ambiguously (timeout, 5xx) took effect after all, so a retry
        never repeats an action the provider already carried out."""
        params = {k: v for k, v in (params or {}).items() if v is not None}
        if self.team_id:
            params["teamId"] = self.team_id
        last = ""
        for attempt in range(self.max_attempts):
            if attempt and done is not None and done():
                return None
            try:
                status, headers, body = self._send(method, path, params)
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__} calling {method} {path}"
                if attempt + 1 < self.max_attempts:
                    self._sleep(min(self.max_wait_s, 0.5 * 2**attempt))
                continue
            if status == 429 or status >= 500:
                last = f"HTTP {status} from {method} {path}"
                if attempt + 1 < self.max_attempts:
                    self._sleep(self._wait_for(status, headers, attempt))
                continue
            if status >= 400:
                raise ProviderError(f"HTTP {status} from {method} {path}: {_error_message(body)}",
                                    status=status)
            if not body:
                return None
            try:
                return json.loads(body)
            except ValueError:
                raise MalformedPayload(f"{method} {path} answered non-JSON") from None
        if done is not None and done():
            return None
        raise ProviderError(f"gave up after {self.max_attempts} attempts: {last}")

    def _send(self, method: str, path: str, params: dict) -> tuple[int, httpx.Headers, bytes]:
        # Streamed with a cap: a runaway or hostile answer must not exhaust memory.
        with self._client.stream(method, path, params=params) as resp:
            body = bytearray()
            for chunk in resp.iter_bytes():
                body += chunk
                if len(body) > MAX_RESPONSE_BYTES:
                    raise MalformedPayload(
                        f"{method} {path} answered more than {MAX_RESPONSE_BYTES} bytes")
            return resp.status_code, resp.headers, bytes(body)

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
        """Make `deployment_id` production again; at most one effective call, retries included."""
        self._request("POST", f"/v1/projects/{_seg(self.project_id)}/rollback/{_seg(deployment_id)}",
                      done=lambda: self._is_production(deployment_id))

    def promote(self, deployment_id: str) -> None:
        self._request("POST", f"/v10/projects/{_seg(self.project_id)}/promote/{_seg(deployment_id)}",
                      done=lambda: self._is_production(deployment_id))

    def _is_production(self, deployment_id: str) -> bool:
        try:
            return self.production_deployment_id() == deployment_id
        except (ProviderError, MalformedPayload):
            return False

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


def _error_message(body: bytes) -> str:
    try:
        err = json.loads(body).get("error", {})
        return str(err.get("message") or err.get("code") or "")[:200]
    except (ValueError, AttributeError):
        return body[:200].decode("utf-8", "replace")
