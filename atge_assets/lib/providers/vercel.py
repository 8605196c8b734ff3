"""A client for the subset of Vercel's REST API that releases need.

- list   GET  /v6/deployments?projectId=&target=&state=&since=&limit=  (pages via `until=pagination.next`)
- get    GET  /v13/deployments/{id}
- prod   GET  /v9/projects/{projectId}  (`targets.production.id` is the live deployment)
- roll   POST /v1/projects/{projectId}/rollback/{deploymentId}
- promo  POST /v10/projects/{projectId}/promote/{deploymentId}

Answers are read as Vercel's OpenAPI description shapes them (list items: `uid`, `created`,
`readyState`/`state`; get: `id`, `createdAt`, `readyState`; `target` null for a preview; `url` a
bare host) and refused with a one-line MalformedPayload naming the field otherwise; a list entry
so refused is reported in the page's `malformed`, not dropped.

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
import re
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


# The union of the states Vercel's list and get answers name; anything else is not a state.
STATES = ("QUEUED", "BUILDING", "ERROR", "INITIALIZING", "READY", "CANCELED", "DELETED")
# A bare host as Vercel gives it (`atge-3ij3cxz9qr.vercel.app`), with a port for self-hosted APIs.
_HOST = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*(:[0-9]{1,5})?")


def parse_list_item(raw: Any, project_id: str | None = None) -> Deployment:
    """One entry of GET /v6/deployments: `uid`, `created`, a state in `readyState` or `state`."""
    return _parse(raw, "uid", "created", ("readyState", "state"), project_id)


def parse_deployment(raw: Any, project_id: str | None = None) -> Deployment:
    """The answer of GET /v13/deployments/{id}: `id`, `createdAt`, `readyState`."""
    return _parse(raw, "id", "createdAt", ("readyState",), project_id)


def _parse(raw: Any, id_key: str, created_key: str, state_keys: tuple[str, ...],
           project_id: str | None) -> Deployment:
    """Reads the fields the API's description requires of a deployment; every refusal is one
    line naming the field, since it ends up in a sensor's log and the rejected-inputs table."""
    if not isinstance(raw, dict):
        raise MalformedPayload(f"deployment is a {type(raw).__name__}, not an object")
    dep_id = raw.get(id_key)
    if not isinstance(dep_id, str) or not dep_id:
        raise MalformedPayload(f"deployment has no string {id_key!r} (got {_short(dep_id)})")
    if not is_deployment_id(dep_id):
        # It would become a partition key, a run key and a URL segment: refused before anything.
        raise MalformedPayload(f"deployment {_short(dep_id)}: {id_key!r} is not a deployment id "
                               "(letters, digits, '_' and '-', at most 128)")
    where = f"deployment {dep_id}"
    owner = raw.get("projectId")
    if project_id and owner is not None and owner != project_id:
        # A deployment of another project must never be benchmarked, promoted or rolled back.
        raise MalformedPayload(f"{where}: 'projectId' is {_short(owner)}, not {project_id!r}")
    url = _base_url(where, raw.get("url"))
    state = _state(where, raw, state_keys)
    created = raw.get(created_key)
    if isinstance(created, bool) or not isinstance(created, (int, float)):
        raise MalformedPayload(f"{where}: {created_key!r} is {_short(created)}, not a number")
    if isinstance(created, float) and not math.isfinite(created):
        # JSON from Python or JavaScript servers can carry NaN/Infinity; neither is a time.
        raise MalformedPayload(f"{where}: {created_key!r} is {created}, not a time")
    target = raw.get("target")
    if target not in (None, "production", "staging"):
        raise MalformedPayload(f"{where}: 'target' is {_short(target)}, not 'production', "
                               "'staging' or null")
    meta = raw.get("meta", {})
    if not isinstance(meta, dict):
        raise MalformedPayload(f"{where}: 'meta' is a {type(meta).__name__}, not an object")
    # Null is a preview; a staging alias is not production either, and everything downstream
    # (the webhook intake too) knows only production and preview.
    return Deployment(dep_id, url, state, "production" if target == "production" else "preview",
                      int(created), {str(k): str(v) for k, v in meta.items()})


def _state(where: str, raw: dict, keys: tuple[str, ...]) -> str:
    given = {k: raw[k] for k in keys if raw.get(k) is not None}
    if not given:
        raise MalformedPayload(f"{where}: no {' or '.join(map(repr, keys))}")
    for key, value in given.items():
        if value not in STATES:
            raise MalformedPayload(f"{where}: {key!r} is {_short(value)}, not one of "
                                   f"{', '.join(STATES)}")
    if len(set(given.values())) > 1:
        raise MalformedPayload(f"{where}: " + " and ".join(f"{k!r} {v}" for k, v in given.items())
                               + " disagree")
    return next(iter(given.values()))


def _base_url(where: str, url: Any) -> str:
    """Vercel gives a bare host (served over HTTPS); the sandbox and a self-hosted API give an
    http(s) URL, since they serve plain HTTP on one port. Anything else is not a deployment URL."""
    if not isinstance(url, str) or not url:
        raise MalformedPayload(f"{where}: 'url' is {_short(url)}, not a host")
    if "://" not in url:
        if not _HOST.fullmatch(url):
            raise MalformedPayload(f"{where}: 'url' {url!r:.80} is not a host name")
        return f"https://{url}"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a port that is no number
    except ValueError:
        parts = None
    if (parts is None or parts.scheme not in ("http", "https") or not parts.hostname
            or parts.query or parts.fragment or any(c.isspace() for c in url)):
        raise MalformedPayload(f"{where}: 'url' {url!r:.80} is not a host or an http(s) URL")
    return url.rstrip("/")


def _short(value: Any) -> str:
    return f"{value!r:.80}" if isinstance(value, (str, int, float, bool, type(None))) \
        else f"a {type(value).__name__}"


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
            entries, nxt = _page(body)
            for raw in entries:
                try:
                    deployments.append(parse_list_item(raw, self.project_id))
                except MalformedPayload as exc:
                    malformed.append(self.redact(str(exc)))
            if nxt is None or nxt == until:
                break
            until = nxt
        else:
            log.warning("stopped following pagination after %d pages", MAX_PAGES)
        return DeploymentPage(deployments, malformed)

    def get_deployment(self, deployment_id: str) -> Deployment:
        body = self._request("GET", f"/v13/deployments/{_dep_seg(deployment_id)}")
        try:
            dep = parse_deployment(body, self.project_id)
        except MalformedPayload as exc:
            raise MalformedPayload(self.redact(f"GET /v13/deployments: {exc}")) from None
        if dep.id != deployment_id:
            raise MalformedPayload(f"GET /v13/deployments/{deployment_id} answered deployment "
                                   f"{self.redact(_short(dep.id))}")
        return dep

    def production_deployment_id(self) -> str | None:
        path = f"/v9/projects/{_seg(self.project_id)}"
        try:
            return _production_id(self._request("GET", path))
        except MalformedPayload as exc:
            raise MalformedPayload(self.redact(f"GET {path}: {exc}")) from None

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


def _page(body: Any) -> tuple[list, int | None]:
    """The entries of one list page and its `pagination.next` (the `until` of the next page,
    null on the last)."""
    if not isinstance(body, dict) or not isinstance(body.get("deployments"), list):
        raise MalformedPayload("GET /v6/deployments: no 'deployments' list")
    pagination = body.get("pagination")
    if not isinstance(pagination, dict):
        raise MalformedPayload("GET /v6/deployments: no 'pagination' object")
    nxt = pagination.get("next")
    if nxt is not None and (isinstance(nxt, bool) or not isinstance(nxt, (int, float))
                            or not math.isfinite(nxt)):
        raise MalformedPayload(f"GET /v6/deployments: 'pagination.next' is {_short(nxt)}, "
                               "not a timestamp or null")
    return body["deployments"], None if nxt is None else int(nxt)


def _production_id(body: Any) -> str | None:
    """`targets.production.id` of a project: the live deployment, None before the first one."""
    if not isinstance(body, dict):
        raise MalformedPayload(f"the project is {_short(body)}, not an object")
    targets = body.get("targets", {})
    if targets is None:
        return None
    if not isinstance(targets, dict):
        raise MalformedPayload(f"'targets' is {_short(targets)}, not an object")
    live = targets.get("production")
    if live is None:
        return None
    if not isinstance(live, dict):
        raise MalformedPayload(f"'targets.production' is {_short(live)}, not an object")
    dep_id = live.get("id")
    if not is_deployment_id(dep_id):
        raise MalformedPayload(f"'targets.production.id' is {_short(dep_id)}, not a deployment id")
    return dep_id


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
