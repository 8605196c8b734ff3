"""HTTP shared by the features: POST with retries (backoff, `Retry-After`, capped attempts and
waiting) and the host allow-list.
"""

from __future__ import annotations

import email.utils
import fnmatch
import ipaddress
import math
import time
from dataclasses import dataclass
from datetime import timezone
from typing import Callable, Iterable, Mapping
from urllib.parse import urlsplit

import httpx

from atge_assets.lib.redaction import redact


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 4
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0
    max_total_wait_s: float = 60.0  # sleeping only; each attempt is also bounded by its timeout

    def backoff(self, retry: int) -> float:
        return min(self.max_delay_s, self.base_delay_s * 2 ** retry)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait per a Retry-After header (delta-seconds or HTTP date); None if unusable."""
    if not value or not value.strip():
        return None
    value = value.strip()
    try:
        secs = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        secs = when.timestamp() - (time.time() if now is None else now)
    return max(0.0, secs) if math.isfinite(secs) else None


@dataclass(frozen=True)
class PostOutcome:
    ok: bool
    attempts: int
    status: int | None
    waited_s: float
    detail: str


def post_with_retry(
    client: httpx.Client,
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    policy: RetryPolicy,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.time,
    secrets: Iterable[str] = (),
) -> PostOutcome:
    """POST with the retry rules above. Never raises for HTTP or network trouble; `detail` is
    redacted with `secrets` (plus every registered secret)."""
    secrets = tuple(secrets)
    waited = 0.0
    status: int | None = None
    detail = ""
    for attempt in range(1, policy.max_attempts + 1):
        retry_after = None
        try:
            resp = client.post(url, content=body, headers=dict(headers))
        except httpx.TimeoutException as exc:
            status, detail = None, f"timed out ({type(exc).__name__})"
        except httpx.TransportError as exc:
            status, detail = None, f"{type(exc).__name__}: {redact(str(exc), secrets)[:200]}"
        except httpx.HTTPError as exc:  # not a network problem: retrying will not help
            return PostOutcome(False, attempt, None, waited,
                               f"{type(exc).__name__}: {redact(str(exc), secrets)[:200]}")
        else:
            status = resp.status_code
            if 200 <= status < 300:
                return PostOutcome(True, attempt, status, waited, "")
            snippet = redact(resp.text[:300], secrets).strip()[:200]
            detail = f"HTTP {status}" + (f": {snippet}" if snippet else "")
            if status != 429 and status < 500:
                return PostOutcome(False, attempt, status, waited, detail)
            retry_after = parse_retry_after(resp.headers.get("retry-after"), clock())
        if attempt == policy.max_attempts:
            break
        wait = policy.backoff(attempt - 1)
        if retry_after is not None:
            # The server said when; sooner would only earn another 429.
            wait = max(retry_after, wait) if status != 429 else retry_after
        if waited + wait > policy.max_total_wait_s:
            return PostOutcome(False, attempt, status, waited,
                               f"{detail}; gave up: waiting {wait:.1f}s more would exceed the "
                               f"{policy.max_total_wait_s:.0f}s budget")
        sleep(wait)
        waited += wait
    return PostOutcome(False, policy.max_attempts, status, waited,
                       f"{detail}; gave up after {policy.max_attempts} attempts")


# -- the host allow-list ------------------------------------------------------------------------
class HostNotAllowed(ValueError):
    """The URL's scheme or host is not one the provider or the configuration allows."""


# Cloud metadata endpoints: never a benchmark target, whatever the allow-list says.
_METADATA_HOSTS = {"metadata.google.internal", "metadata", "instance-data"}


def check_url(url: str, allowed_hosts: Iterable[str]) -> str:
    """Return the URL if its scheme is http(s) and its host matches an allowed pattern.

    Patterns are shell-style (`*.vercel.app`, `127.0.0.1`). Link-local addresses (the cloud
    metadata service lives at 169.254.169.254) are refused even when a pattern would match.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise HostNotAllowed(f"scheme {parts.scheme or '(none)'!r} is not http or https: {url!r}")
    host = (parts.hostname or "").lower().rstrip(".")
    if not host:
        raise HostNotAllowed(f"no host in {url!r}")
    if parts.username or parts.password:
        raise HostNotAllowed("URLs with credentials are not benchmarked")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if (ip is not None and (ip.is_link_local or ip.is_multicast or ip.is_unspecified)) or (
        host in _METADATA_HOSTS
    ):
        raise HostNotAllowed(f"host {host!r} is a link-local or metadata address")
    patterns = [p.strip().lower() for p in allowed_hosts if p and p.strip()]
    if not any(fnmatch.fnmatchcase(host, p) for p in patterns):
        raise HostNotAllowed(f"host {host!r} is not in the allowed hosts {patterns}")
    return url
