"""A loopback server answering Vercel's shapes the way a broken or hostile API can: entries from
the year 2100 or with NaN times, ids that are paths, 403 for one id forever, 429 for an hour,
bodies trickled a byte at a time, 20,000 entries in one page, the token echoed back.

    GET /v6/deployments        every entry of `deployments` created at or after `since` (or all,
                               without `honour_since`), in one page whatever `limit` says,
                               newest first; or `list_answer`
    GET /v13/deployments/{id}  `by_id[id]` if set, else the entry of that id, else 404
"""

from __future__ import annotations

import contextlib
import json
import math
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit


class HostileApi(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.deployments: list[dict] = []
        self.by_id: dict[str, tuple[int, dict, object]] = {}  # id -> (status, headers, body)
        self.list_answer: tuple[int, dict, object] | None = None
        self.honour_since = True  # False: every entry on every poll
        # "body": headers at once, then the body a byte every `trickle_s`; "headers": even the
        # status line and headers that slowly.
        self.trickle: str | None = None
        self.trickle_s = 0.25
        self.requests: list[str] = []
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def add(self, dep_id: str, created, state: str = "READY", target: str | None = "production",
            **extra) -> dict:
        raw = {"uid": dep_id, "url": f"{dep_id}.example.test", "createdAt": created,
               "created": created, "readyState": state, "state": state, "target": target, **extra}
        with self._lock:
            self.deployments.append(raw)
        return raw


class _Handler(BaseHTTPRequestHandler):
    server: HostileApi
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        parts = urlsplit(self.path)
        srv = self.server
        srv.requests.append(parts.path)
        if parts.path == "/v6/deployments":
            if srv.list_answer is not None:
                return self._answer(*srv.list_answer)
            return self._answer(200, {}, self._list(parse_qs(parts.query)))
        if parts.path.startswith("/v13/deployments/"):
            dep_id = unquote(parts.path.rsplit("/", 1)[1])
            if dep_id in srv.by_id:
                return self._answer(*srv.by_id[dep_id])
            with srv._lock:
                raw = next((d for d in srv.deployments if d["uid"] == dep_id), None)
            if raw is None:
                return self._answer(404, {}, {"error": {"code": "not_found"}})
            return self._answer(200, {}, dict(raw, id=raw["uid"]))
        return self._answer(404, {}, {"error": {"code": "not_found"}})

    def _list(self, q: dict) -> dict:
        since = float(q["since"][0]) if q.get("since") else None
        with self.server._lock:
            rows = [d for d in self.server.deployments
                    if since is None or not self.server.honour_since
                    or not _comparable(d["createdAt"])
                    or d["createdAt"] >= since]
        rows.sort(key=lambda d: d["createdAt"] if _comparable(d["createdAt"]) else 0,
                  reverse=True)
        return {"deployments": rows, "pagination": {"count": len(rows), "next": None}}

    def _answer(self, status: int, headers: dict, body) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        head = [f"HTTP/1.1 {status} X", "content-type: application/json",
                f"content-length: {len(data)}", *(f"{k}: {v}" for k, v in headers.items())]
        raw_head = ("\r\n".join(head) + "\r\n\r\n").encode()
        mode, pause = self.server.trickle, self.server.trickle_s
        try:
            if mode == "headers":
                self._dribble(raw_head + data, pause)
            elif mode == "body":
                self.wfile.write(raw_head)
                self.wfile.flush()
                self._dribble(data, pause)
            else:
                self.wfile.write(raw_head + data)
        except OSError:
            self.close_connection = True  # the client hung up on us: what a cut looks like

    def _dribble(self, data: bytes, pause: float) -> None:
        for i in range(len(data)):
            self.wfile.write(data[i:i + 1])
            self.wfile.flush()
            time.sleep(pause)


def _comparable(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@contextlib.contextmanager
def hostile_api():
    srv = HostileApi()
    threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
