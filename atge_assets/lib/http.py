"""HTTP shared by the features: POST with retries (backoff, `Retry-After`, capped attempts and
waiting) and the host allow-list.
"""

from __future__ import annotations

import email.utils
import fnmatch
import ipaddress
import math
import re
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


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Cloud metadata services: never a benchmark target, whatever the allow-list says. Inside a cloud
# these names resolve to them; the addresses are the services' own, some outside link-local.
_METADATA_HOSTS = {"metadata.google.internal", "metadata.goog", "metadata", "instance-data",
                   "instance-data.ec2.internal"}
_METADATA_ADDRESSES = {ipaddress.ip_address(a) for a in (
    "169.254.169.254",  # AWS, GCP, Azure, Oracle, DigitalOcean...
    "fd00:ec2::254",  # AWS over IPv6: unique-local, so the link-local rule alone misses it
    "100.100.100.200",  # Alibaba Cloud, inside CGNAT space
    "192.0.0.192",  # Oracle Cloud Classic
    "168.63.129.16",  # Azure's WireServer, a public address
)}
_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")  # Linux connects 0.0.0.0 to this very host
_BROADCAST = ipaddress.ip_address("255.255.255.255")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAME = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*")
_NUMBER = re.compile(r"0[x][0-9a-f]*|0[0-7]*|[1-9][0-9]*")
_NON_PUBLIC = [(ipaddress.ip_network(n), kind) for n, kind in (
    ("10.0.0.0/8", "a private address (RFC 1918)"),
    ("172.16.0.0/12", "a private address (RFC 1918)"),
    ("192.168.0.0/16", "a private address (RFC 1918)"),
    ("100.64.0.0/10", "a shared carrier-grade NAT address (RFC 6598)"),
    ("fc00::/7", "a unique-local IPv6 address"),
)]


def _inet_aton(host: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address a resolver makes of `host` by the rules of inet_aton(3), or None.

    getaddrinfo takes one to four parts, each decimal, 0x-hex or 0-octal, the last filling the
    bytes left: `127.1`, `2852039166`, `0xa9fea9fe`, `0251.0376.0251.0376` are all addresses, and
    a check that compared strings would let them through.
    """
    parts = host.split(".")
    if not 1 <= len(parts) <= 4 or not all(_NUMBER.fullmatch(p) for p in parts):
        return None
    nums = [int(p[2:] or "0", 16) if p.startswith("0x") else int(p, 8) if p.startswith("0")
            else int(p) for p in parts]
    *head, last = nums
    if any(n > 255 for n in head) or last >= 1 << 8 * (4 - len(head)):
        return None  # not an address to the resolver either: it is looked up as a name
    value = 0
    for n in head:
        value = value << 8 | n
    return ipaddress.IPv4Address(value << 8 * (4 - len(head)) | last)


def _embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one reaches: mapped, compatible (deprecated, still parsed),
    6to4, or NAT64's well-known prefix."""
    if ip.version == 4:
        return None
    if ip.ipv4_mapped or ip.sixtofour:
        return ip.ipv4_mapped or ip.sixtofour
    n = int(ip)
    if 1 < n < 1 << 32 or ip in _NAT64:
        return ipaddress.IPv4Address(n & 0xFFFFFFFF)
    return None


def parse_host(host: str) -> tuple[str, IPAddress | None]:
    """The host as a resolver will take it: (canonical text, its address or None for a name).

    Names are lowercased, lose trailing dots and go through IDNA (fullwidth digits and dots
    become ASCII, as getaddrinfo would make them); every IPv4 spelling becomes dotted quad.
    Raises HostNotAllowed for a host no resolver would take as a name or an address.
    """
    host = host.strip().lower()
    if ":" in host:  # only an IPv6 literal has one here: urlsplit took the port off
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            raise HostNotAllowed(f"host {host!r} is not a valid IPv6 address") from None
        return str(ip), ip
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii").lower()
        except UnicodeError:
            raise HostNotAllowed(f"host {host!r} is not a valid host name") from None
    host = host.rstrip(".")
    if not _NAME.fullmatch(host):
        raise HostNotAllowed(f"host {host!r} is not a valid host name")
    ip = _inet_aton(host)
    return (str(ip), ip) if ip is not None else (host, None)


def _forbidden(ip: IPAddress) -> str | None:
    for a in filter(None, (ip, _embedded_ipv4(ip))):
        if a in _METADATA_ADDRESSES:
            return "a cloud metadata address"
        if a.is_link_local:
            return "a link-local address"
        if a.is_multicast:
            return "a multicast address"
        if a.is_unspecified or a in _THIS_NETWORK or a == _BROADCAST:
            return "an unspecified or broadcast address"
    return None


def non_public(ip: IPAddress) -> str | None:
    """What keeps `ip` off the public internet ("a private address (RFC 1918)", ...), or None
    for a public or loopback address, which anyone may point a benchmark at."""
    a = _embedded_ipv4(ip) or ip  # ::ffff:10.0.0.5 is 10.0.0.5 on the wire
    if a.is_loopback:
        return None
    kind = _forbidden(ip) or next((k for net, k in _NON_PUBLIC if a in net), None)
    if kind or not a.is_global:
        return kind or "a reserved, non-public address"
    return None


def connects_to(ip: IPAddress) -> IPAddress:
    """The address a connection to `ip` reaches: ::ffff:10.0.0.5 is 10.0.0.5 on the wire."""
    return _embedded_ipv4(ip) or ip


def _canonical_pattern(pattern: str) -> str:
    pattern = pattern.strip().lower()
    if pattern.startswith("[") and pattern.endswith("]"):
        pattern = pattern[1:-1]
    if any(c in pattern for c in "*?["):
        return pattern
    try:  # a literal address names the same host however it is spelt
        return parse_host(pattern)[0]
    except HostNotAllowed:
        return pattern


def host_matches(host: str, patterns: Iterable[str]) -> bool:
    """Whether the host, compared in its canonical form (`127.1` is 127.0.0.1), matches one of
    the shell-style patterns."""
    name, ip = parse_host(host)
    names = {name} | ({str(connects_to(ip))} if ip is not None else set())
    patterns = [_canonical_pattern(p) for p in patterns if p and p.strip()]
    return any(fnmatch.fnmatchcase(n, p) for n in names for p in patterns)


def check_url(url: str, allowed_hosts: Iterable[str]) -> str:
    """Return the URL if its scheme is http(s) and its host matches an allowed pattern.

    Patterns are shell-style (`*.vercel.app`, `127.0.0.1`), matched against the host's canonical
    form. Link-local, multicast, unspecified and cloud metadata addresses and names are refused
    even when a pattern (`*` included) would match, however the address is spelt.
    """
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # a bracketed host that is no IPv6 address, for one
        raise HostNotAllowed(f"{url!r} is not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise HostNotAllowed(f"scheme {parts.scheme or '(none)'!r} is not http or https: {url!r}")
    raw = parts.hostname or ""
    if not raw.strip(". "):
        raise HostNotAllowed(f"no host in {url!r}")
    if parts.username or parts.password:
        raise HostNotAllowed("URLs with credentials are not benchmarked")
    host, ip = parse_host(raw)
    seen = str(connects_to(ip)) if ip is not None else host
    shown = repr(raw) if raw == seen else f"{raw!r} ({seen})"
    kind = _forbidden(ip) if ip is not None else (
        "a cloud metadata name" if host in _METADATA_HOSTS else None)
    if kind:
        raise HostNotAllowed(f"host {shown} is {kind}; link-local, metadata, multicast and "
                             "unspecified addresses are always refused")
    patterns = [p.strip().lower() for p in allowed_hosts if p and p.strip()]
    if not host_matches(host, patterns):
        raise HostNotAllowed(f"host {shown} is not in the allowed hosts {patterns}")
    return url
