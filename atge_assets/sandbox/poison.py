"""Poisoned provider answers, for the fault drills of issue 15 (a sandbox extension).

While a poison is set, the sandbox's Vercel API answers the deployment list (and, for
`forbidden`, one deployment's GET) the way a broken or hostile provider did when probed; every
real deployment stays listed as usual, so a drill can deploy one and watch whether it is still
benchmarked. Kept in memory only: a restarted sandbox is clean.

Kinds (the entries are added to every list answer, whatever `since` and `limit` say, except the
`forbidden` one, which is listed by `since` like a real entry):
  future      an entry created in the year 2100
  nan         an entry whose createdAt is NaN (the JSON spelling Python and JavaScript emit)
  infinity    an entry whose createdAt is Infinity
  bad_ids     entries with ids `dpl_a/../b` and 300 characters
  big_page    20,000 READY entries (of another project: what a token listing without its
              project filter gets), all in one page, each with only the required fields
  forbidden   a BUILDING entry (so the sensor keeps it pending) whose GET answers 403
  rate_limit  the list answers 429 with `x-ratelimit-reset` an hour away
  slow        the list answer trickles one byte every `trickle_s` (0.5 s); once the poison is
              cleared the rest goes out at once

Routes:
  POST /_sandbox/poison  {"kind": ..., "seconds": optional, clears itself after that long}
                         or {"kind": null} to clear; answers {"poison": {...} or null}
  GET  /_sandbox/poison  the poison set, if any: its kind, whether still active (a timed one
                         lifts by itself) and how many answers it poisoned
"""

from __future__ import annotations

import hmac
import json
import math
import threading
import time

PATH = "/_sandbox/poison"
KINDS = ("future", "nan", "infinity", "bad_ids", "big_page", "forbidden", "rate_limit", "slow")
YEAR_2100_MS = 4_102_444_800_000
BIG_PAGE = 20_000
LOCKED_ID = "dpl_poison_locked"
TRICKLE_S = 0.5
MAX_SECONDS = 3600.0


class Poison:
    """The poison now set; thread-safe, since every request is answered on its own thread."""

    def __init__(self):
        self._lock = threading.Lock()
        self.kind: str | None = None
        self.set_at = 0.0
        self.until: float | None = None
        self.count = 0  # poisoned answers given since it was set

    def set(self, kind: str | None, seconds: float | None = None) -> dict | None:
        if kind is not None and kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)} or null, not {kind!r:.40}")
        if seconds is not None and (isinstance(seconds, bool) or not isinstance(
                seconds, (int, float)) or not 0 < seconds <= MAX_SECONDS):
            raise ValueError(f"seconds must be a number in (0, {MAX_SECONDS:g}]")
        with self._lock:
            self.kind, self.set_at, self.count = kind, time.time(), 0
            self.until = self.set_at + seconds if kind and seconds else None
        return self.describe()

    def active(self) -> str | None:
        with self._lock:
            if self.kind and self.until is not None and time.time() >= self.until:
                return None  # lifted by itself; still described until cleared
            return self.kind

    def hit(self) -> None:
        with self._lock:
            self.count += 1

    def describe(self) -> dict | None:
        active = self.active() is not None
        with self._lock:
            if not self.kind:
                return None
            return {"kind": self.kind, "active": active, "set_at": self.set_at,
                    "until": self.until, "answers": self.count}


def _poison(server) -> Poison:
    # One per server, made on first use (extensions keep their state on the server).
    with _make_lock:
        if not hasattr(server, "atge_poison"):
            server.atge_poison = Poison()
        return server.atge_poison


_make_lock = threading.Lock()


def handle(handler, method: str, path: str, query: dict) -> bool:
    poison = _poison(handler.server)
    if path == PATH:
        if method == "POST":
            body = handler._body()
            handler._send(201, {"poison": poison.set(body.get("kind"), body.get("seconds"))})
        elif method == "GET":
            handler._send(200, {"poison": poison.describe()})
        else:
            handler._send(405, {"error": "METHOD_NOT_ALLOWED"})
        return True
    kind = poison.active()
    if not kind or method != "GET" or not _authorized(handler):
        return False  # the core routes answer (an unauthorized call gets their 403)
    if path in ("/v6/deployments", "/v7/deployments"):
        poison.hit()
        return _list(handler, poison, kind, query)
    if kind == "forbidden" and path == f"/v13/deployments/{LOCKED_ID}":
        poison.hit()
        handler._send(403, {"error": {"code": "forbidden",
                                      "message": "You don't have permission to access this"}})
        return True
    return False


def _authorized(handler) -> bool:
    auth = (handler.headers.get("authorization") or "").encode()
    return hmac.compare_digest(auth, f"Bearer {handler.server.token}".encode())


def _list(handler, poison: Poison, kind: str, query: dict) -> bool:
    if kind == "rate_limit":
        reset = int(time.time()) + 3600
        handler._send(429, {"error": {"code": "rate_limited", "message": "Rate limit exceeded",
                                      "limit": {"remaining": 0, "reset": reset, "total": 100}}},
                      {"x-ratelimit-limit": "100", "x-ratelimit-remaining": "0",
                       "x-ratelimit-reset": str(reset)})
        return True
    page = handler._list(query)
    if kind == "slow":
        _trickle(handler, poison, json.dumps(page).encode())
        return True
    template = page["deployments"][0] if page["deployments"] else _template(handler)
    page["deployments"] = _entries(kind, template, handler, query) + page["deployments"]
    page["pagination"]["count"] = len(page["deployments"])
    handler._send(200, page)
    return True


def _template(handler) -> dict:
    from atge_assets.sandbox import vercel_payloads

    st = handler.server.state
    dep = st.world.deployments[-1]
    return vercel_payloads.deployment_item(dep, handler._app_url(dep), st.world.project_id,
                                           st.world.production, dep.state())


def _entry(template: dict, dep_id: str, created, **extra) -> dict:
    return dict(template, uid=dep_id, createdAt=created, created=created, buildingAt=created,
                **extra)


def _entries(kind: str, template: dict, handler, query: dict) -> list[dict]:
    now = int(time.time() * 1000)
    if kind == "future":
        return [_entry(template, "dpl_poison_future", YEAR_2100_MS)]
    if kind == "nan":
        return [_entry(template, "dpl_poison_nan", math.nan)]
    if kind == "infinity":
        return [_entry(template, "dpl_poison_infinity", math.inf)]
    if kind == "bad_ids":
        return [_entry(template, "dpl_a/../b", now - 1000), _entry(template, "d" * 300, now - 1000)]
    if kind == "big_page":
        # The fields the API's description requires, no more: the whole page stays under the
        # client's cap on one answer (8 MB), so the sensor really reads all 20,000.
        slim = {k: template[k] for k in ("url", "readyState", "state", "target", "name")}
        return [_entry(slim, f"dpl_other_{i:05d}", now - 60_000 - i,
                       projectId="prj_someone_else") for i in range(BIG_PAGE)]
    if kind == "forbidden":
        # Listed by `since` like a real entry: once a newer deployment moves the sensor's
        # `since` past it, the sensor can only reach it by id, and that GET answers 403.
        created = int(_poison(handler.server).set_at * 1000)
        since = int(query["since"]) if query.get("since") else None
        if since is not None and created < since:
            return []
        building = {k: v for k, v in template.items()
                    if k not in ("ready", "readySubstate", "aliasAssigned")}
        return [_entry(building, LOCKED_ID, created, readyState="BUILDING", state="BUILDING",
                       aliasAssigned=False, isRollbackCandidate=False)]
    return []


def _trickle(handler, poison: Poison, data: bytes) -> None:
    """The whole status line and headers at once, the body a byte at a time until cleared."""
    handler.send_response(200)
    handler.send_header("content-type", "application/json")
    handler.send_header("content-length", str(len(data)))
    handler.end_headers()
    try:
        handler.wfile.flush()
        for i in range(len(data)):
            if poison.active() != "slow":
                handler.wfile.write(data[i:])
                return
            handler.wfile.write(data[i:i + 1])
            handler.wfile.flush()
            time.sleep(TRICKLE_S)
    except OSError:
        handler.close_connection = True  # the client gave up: what a deadline looks like
