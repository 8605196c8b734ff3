"""`atge loadtest`: one stage against a URL, closed (--users) or open (--rate) model."""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from urllib.parse import urlsplit

from atge_assets.lib.http import (
    HostNotAllowed,
    check_url,
    connects_to,
    host_matches,
    non_public,
    parse_host,
)
from atge_assets.lib.settings import allowed_hosts
from atge_assets.load.engine import run_stage
from atge_assets.load.spec import LoadSpec


# -- command line --------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="atge loadtest",
        description="Load-test one URL: closed model (users) by default, open model with --rate.")
    p.add_argument("--url", required=True, help="base URL; its host is allowed by naming it")
    p.add_argument("--path", default="", help="appended to the URL, e.g. /api/health")
    p.add_argument("--users", type=int, required=True,
                   help="virtual users (closed model) or connections (open model)")
    p.add_argument("--duration", type=float, required=True, help="seconds")
    p.add_argument("--rate", type=float, help="requests/s: the open model, latency from due time")
    p.add_argument("--method", help="HTTP method (default GET, or POST with --body)")
    p.add_argument("--body", help="a JSON body, e.g. '{\"symbol\": \"BTC\"}'")
    p.add_argument("--header", action="append", default=[], metavar="'NAME: VALUE'")
    p.add_argument("--think", type=float, default=0.0,
                   help="closed model: seconds between a user's requests")
    p.add_argument("--ramp-up", type=float, default=0.0,
                   help="closed model: seconds over which the users start")
    p.add_argument("--max-requests", type=int)
    p.add_argument("--timeout", type=float, default=30.0, help="per request, seconds")
    p.add_argument("--abort-error-rate", type=float, default=0.5,
                   help="abort when the error share of the last --abort-window requests exceeds "
                   "this (default 0.5; 1 never aborts)")
    p.add_argument("--abort-window", type=int, default=100)
    p.add_argument("--processes", type=int, default=1, help="shards in separate processes, merged")
    p.add_argument("--allow-host", action="append", default=[], metavar="PATTERN",
                   help="more allowed host patterns (shell-style), also from ATGE_ALLOWED_HOSTS; "
                   "the URL's own host is allowed when it is public or loopback, a private one "
                   "(RFC 1918, CGNAT, unique-local) only when named here")
    p.add_argument("--json", action="store_true",
                   help="print only the JSON line, with the encoded histogram")
    return p


def _spec_from_args(a) -> LoadSpec:
    body = None
    if a.body is not None:
        try:
            body = json.loads(a.body)
        except json.JSONDecodeError as exc:
            raise ValueError(f"--body is not JSON: {exc}") from None
    headers = {}
    for h in a.header:
        name, sep, value = h.partition(":")
        if not sep or not name.strip():
            raise ValueError(f"--header {h!r} is not 'NAME: VALUE'")
        headers[name.strip()] = value.strip()
    if a.path and not a.path.startswith("/"):
        raise ValueError("--path must start with /")
    if not 1 <= a.processes <= 64:
        raise ValueError("--processes must be in [1, 64]")
    method = a.method or ("POST" if body is not None else "GET")
    return LoadSpec(
        url=a.url.rstrip("/") + a.path if a.path else a.url, users=a.users,
        duration_s=a.duration, rate=a.rate, method=method, body=body, headers=headers,
        think_time_s=(a.think, a.think), ramp_up_s=a.ramp_up, max_requests=a.max_requests,
        timeout_s=a.timeout,
        abort_error_rate=a.abort_error_rate if a.abort_error_rate < 1 else None,
        abort_window=a.abort_window,
    ).validate()


def _allowed_hosts(url: str, named: list[str]) -> list[str]:
    """The patterns the stage may call: those named, plus the URL's own host if it is public or
    loopback. Typing a URL is consent to load a public site or your own machine; a private
    address reached by a typo or a pasted internal link must be named once more.
    """
    explicit = [h for h in named if h] + list(allowed_hosts(os.environ))
    check_url(url, ["*"])  # link-local and metadata first: no pattern lets those through
    parts = urlsplit(url)
    raw = parts.hostname or ""
    host, ip = parse_host(raw)
    if host_matches(host, explicit):
        return [host, *explicit]
    if ip is not None:
        addresses = [ip]
    else:  # a name: what it resolves to decides (the engine resolves it again, and checks)
        try:
            infos = socket.getaddrinfo(host, parts.port or 80, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise ValueError(f"cannot resolve {host!r}: {exc}") from None
        addresses = [parse_host(info[4][0])[1] for info in infos]
    for a in addresses:
        kind = non_public(a)
        if kind:
            via = "" if str(connects_to(a)) == raw else f" ({connects_to(a)})"
            raise HostNotAllowed(f"host {raw!r}{via} is {kind}; pass --allow-host {raw} "
                                 "to load it")
    return [host, *explicit]


def cli_main(argv: list[str]) -> int:
    """`atge loadtest ...`: the last stdout line is the result as JSON. Exit 0 done, 1 aborted,
    2 bad arguments or a refused host."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # argparse has printed its message
        return int(exc.code or 0)
    try:
        spec = _spec_from_args(args)
        allowed = _allowed_hosts(spec.url, args.allow_host)
        result = run_stage(spec, allowed_hosts=allowed, processes=args.processes)
    except (ValueError, HostNotAllowed) as exc:  # HostNotAllowed is a ValueError; named for readers
        print(f"atge loadtest: {exc}", file=sys.stderr)
        return 2
    if not args.json:
        r = result
        print(f"{spec.model} model, {r.users} users"
              + (f", {r.rate:g} req/s offered" if r.rate else "")
              + f": {r.requests} requests in {r.duration_s:.2f} s = {r.rps:.1f} req/s, "
              f"errors {r.errors} ({r.error_rate:.2%})")
        if r.p50_ms is not None:
            print(f"latency ms: avg {r.avg_ms:.2f}  p50 {r.p50_ms:.2f}  p95 {r.p95_ms:.2f}  "
                  f"p99 {r.p99_ms:.2f}  max {r.max_ms:.2f}")
        if r.aborted:
            print(f"aborted: {r.aborted}")
    print(json.dumps(result.to_dict(histogram=args.json)), flush=True)
    return 1 if result.aborted else 0


if __name__ == "__main__":
    sys.exit(cli_main(sys.argv[1:]))
