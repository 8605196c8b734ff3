"""A client for the subset of Vercel's REST API that releases need.

- list   GET  /v6/deployments?projectId=&target=&state=&since=&limit=  (pages via `until=pagination.next`)
- get    GET  /v13/deployments/{id}
- prod   GET  /v9/projects/{projectId}  (`targets.production.id` is the live deployment)
- roll   POST /v1/projects/{projectId}/rollback/{deploymentId}
- promo  POST /v10/projects/{projectId}/promote/{deploymentId}

Timeouts on every call; 429 waits until `x-ratelimit-reset` (epoch seconds) and 5xx backs off,
both capped. A request is cut at a total deadline however slowly the server trickles its answer
(headers or body), and a caller with a time budget (`deadline`) is never slept or kept past it.
The token goes in the Authorization header only: it (and any secret given) is scrubbed from every
error message and malformed-entry report, since a hostile or buggy API may echo it back.
"""

from __future__ import annotations

import json
import logging
import math
import socket
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from atge_assets.lib.providers.base import (
    DeadlineExceeded,
    Deployment,
    DeploymentPage,
    MalformedPayload,
    ProviderError,
    is_deployment_id,
)
from atge_assets.lib.redaction import redact

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
    if isinstance(created, float) and not math.isfinite(created):
        # JSON from Python or JavaScript servers can carry NaN/Infinity; neither is a time.
        raise MalformedPayload(f"deployment {dep_id}: 'created' is {created}, not a time")
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
        total_timeout_s: float = 30.0,
        max_attempts: int = 4,
        max_wait_s: float = 30.0,
        page_limit: int = 100,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
        secrets: Iterable[str] = (),
        deadline: float | None = None,
    ):
        """`timeout_s` bounds each connect or read, `total_timeout_s` each request as a whole;
        `deadline` (a `time.monotonic()` value, also settable later) is the caller's budget for
        every call, retries and waits included; `secrets` are scrubbed from errors besides the
        token."""
        if not token:
            raise ValueError("a Vercel token is required (set VERCEL_TOKEN)")
        if not project_id:
            raise ValueError("a Vercel project id is required (set VERCEL_PROJECT_ID)")
        self.project_id = project_id
        self.team_id = team_id or None
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.total_timeout_s = total_timeout_s
        self.deadline = deadline
        self._secrets = [token, *(s for s in secrets if s)]
        self._socket: socket.socket | None = None  # of the pool's connection, for the watchdog
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

    def redact(self, text: str) -> str:
        """`text` without the token or any configured secret: for anything we log or store."""
        return redact(text, self._secrets)

    def remaining_s(self) -> float:
        """What is left of the caller's budget (infinite without a deadline)."""
        return math.inf if self.deadline is None else self.deadline - time.monotonic()

    # -- HTTP with retries -------------------------------------------------------------------
    def _wait_for(self, method: str, path: str, status: int, headers: httpx.Headers,
                  attempt: int) -> float:
        if status == 429:
            try:
                reset = float(headers.get("x-ratelimit-reset"))
            except (TypeError, ValueError):
                reset = math.nan
            if math.isfinite(reset):
                wait = max(0.0, reset - time.time()) + 0.05
                if wait >= self.remaining_s():
                    # Sleeping would outlive the caller (a sensor tick, a code server's deadline):
                    # say when to come back instead.
                    at = datetime.fromtimestamp(min(reset, 4e10), UTC)
                    raise ProviderError(
                        f"rate limited on {method} {path} until {at:%Y-%m-%d %H:%M:%S} UTC "
                        f"(in {wait:.0f} s), past this call's deadline", status=429)
                return min(self.max_wait_s, wait)
        return min(self.max_wait_s, 0.5 * 2**attempt)

    def _pause(self, seconds: float, why: str) -> None:
        if seconds >= self.remaining_s():
            raise DeadlineExceeded(f"{why}; no time left to retry before the deadline")
        self._sleep(seconds)

    def _request(self, method: str, path: str, params: dict | None = None,
                 done: Callable[[], bool] | None = None) -> Any:
        """One API call with retries. For a call that changes state, `done` tells whether an
        earlier attempt that failed ambiguously (timeout, 5xx) took effect after all, so a retry
        never repeats an action the provider already carried out."""
        params = {k: v for k, v in (params or {}).items() if v is not None}
        if self.team_id:
            params["teamId"] = self.team_id
        last, last_status = "", None
        for attempt in range(self.max_attempts):
            if attempt and done is not None and done():
                return None
            remaining = self.remaining_s()
            if remaining <= 0:
                raise DeadlineExceeded(f"deadline reached before {method} {path}"
                                       + (f" (last try: {last})" if last else ""))
            cut_at = time.monotonic() + min(self.total_timeout_s, remaining)
            try:
                status, headers, body = self._send(method, path, params, cut_at)
            except _Cut:
                if self.remaining_s() <= 0:
                    raise DeadlineExceeded(f"{method} {path} was still answering at the "
                                           "deadline; cut") from None
                last, last_status = (f"{method} {path} took over {self.total_timeout_s:g} s; "
                                     "cut"), None
                if attempt + 1 < self.max_attempts:
                    self._pause(min(self.max_wait_s, 0.5 * 2**attempt), last)
                continue
            except httpx.HTTPError as exc:
                last, last_status = f"{type(exc).__name__} calling {method} {path}", None
                if attempt + 1 < self.max_attempts:
                    self._pause(min(self.max_wait_s, 0.5 * 2**attempt), last)
                continue
            if status == 429 or status >= 500:
                last, last_status = f"HTTP {status} from {method} {path}", status
                detail = self.redact(_error_message(body))
                if detail:
                    last += f": {detail}"
                if attempt + 1 < self.max_attempts:
                    self._pause(self._wait_for(method, path, status, headers, attempt), last)
                continue
            if status >= 400:
                raise ProviderError(f"HTTP {status} from {method} {path}: "
                                    f"{self.redact(_error_message(body))}", status=status)
            if not body:
                return None
            try:
                return json.loads(body)
            except ValueError:
                raise MalformedPayload(f"{method} {path} answered non-JSON") from None
        if done is not None and done():
            return None
        raise ProviderError(f"gave up after {self.max_attempts} attempts: {last}",
                            status=last_status)

    def _send(self, method: str, path: str, params: dict,
              cut_at: float) -> tuple[int, httpx.Headers, bytes]:
        # httpx's timeouts bound each read, not the whole: a server trickling a byte a second
        # never trips them. A watchdog shuts the connection's socket at `cut_at`, which wakes
        # a read blocked in the headers or the body alike.
        timeout = httpx.Timeout(max(0.01, min(self.timeout_s, cut_at - time.monotonic())))
        watchdog = threading.Timer(max(0.0, cut_at - time.monotonic()), self._cut_connection)
        watchdog.daemon = True
        watchdog.start()
        try:
            # Streamed with a cap: a runaway or hostile answer must not exhaust memory.
            with self._client.stream(method, path, params=params, timeout=timeout,
                                     extensions={"trace": self._trace}) as resp:
                body = bytearray()
                for chunk in resp.iter_bytes():
                    body += chunk
                    if len(body) > MAX_RESPONSE_BYTES:
                        raise MalformedPayload(
                            f"{method} {path} answered more than {MAX_RESPONSE_BYTES} bytes")
                    if time.monotonic() >= cut_at:
                        raise _Cut()
                return resp.status_code, resp.headers, bytes(body)
        except httpx.HTTPError:
            if time.monotonic() >= cut_at:
                raise _Cut() from None
            raise
        finally:
            watchdog.cancel()

    def _trace(self, event: str, info: dict) -> None:
        # The client is used by one caller at a time, so the pool holds one connection: the
        # newest socket (after TLS, if any) is the one a request is reading from.
        if event in ("connection.connect_tcp.complete", "connection.start_tls.complete"):
            stream = info.get("return_value")
            sock = stream.get_extra_info("socket") if stream is not None else None
            if sock is not None:
                self._socket = sock

    def _cut_connection(self) -> None:
        sock = self._socket
        if sock is not None:
            try:
                # socket.socket's own shutdown, not SSLSocket's, which would drop its TLS state
                # under the reading thread's feet.
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
            except OSError:
                pass

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
                    malformed.append(self.redact(str(exc)))
            nxt = (body.get("pagination") or {}).get("next")
            if not isinstance(nxt, (int, float)) or isinstance(nxt, bool) or nxt == until:
                break
            until = int(nxt)
        else:
            log.warning("stopped following pagination after %d pages", MAX_PAGES)
        return DeploymentPage(deployments, malformed)

    def get_deployment(self, deployment_id: str) -> Deployment:
        body = self._request("GET", f"/v13/deployments/{_dep_seg(deployment_id)}")
        try:
            return parse_deployment(body)
        except MalformedPayload as exc:
            raise MalformedPayload(self.redact(str(exc))) from None

    def production_deployment_id(self) -> str | None:
        body = self._request("GET", f"/v9/projects/{_seg(self.project_id)}")
        prod = ((body or {}).get("targets") or {}).get("production") or {}
        dep_id = prod.get("id") if isinstance(prod, dict) else None
        return dep_id if isinstance(dep_id, str) and dep_id else None

    def rollback(self, deployment_id: str) -> None:
        """Make `deployment_id` production again; at most one effective call, retries included."""
        project, dep = _seg(self.project_id), _dep_seg(deployment_id)
        self._request("POST", f"/v1/projects/{project}/rollback/{dep}",
                      done=lambda: self._is_production(deployment_id))

    def promote(self, deployment_id: str) -> None:
        project, dep = _seg(self.project_id), _dep_seg(deployment_id)
        self._request("POST", f"/v10/projects/{project}/promote/{dep}",
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


class _Cut(Exception):
    """A request reached its total deadline."""


def _seg(value: str) -> str:
    if not value or "/" in value or "?" in value or "#" in value or ".." in value:
        raise ValueError(f"not a valid id: {value!r:.140}")
    return value


def _dep_seg(value: str) -> str:
    if not is_deployment_id(value):
        raise ValueError(f"not a deployment id: {value!r:.140}")
    return value


def _error_message(body: bytes) -> str:
    try:
        err = json.loads(body).get("error", {})
        return str(err.get("message") or err.get("code") or "")[:200]
    except (ValueError, AttributeError):
        return body[:200].decode("utf-8", "replace")
