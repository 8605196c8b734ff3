"""Vercel webhook intake: deployments pushed to us instead of polled, queued durably for the sensor.

    POST <path>   (default /webhooks/vercel)  Vercel's webhook delivery
    GET  /healthz                             liveness, for a load balancer

A delivery is checked in this order, cheapest and least trusting first: size (413), signature
(403: `x-vercel-signature` is the hex HMAC-SHA1 of the raw body with the webhook secret), JSON
(400), type (202 "ignored" for anything but deployment.succeeded / .ready / .promoted, or another
project's event), deployment id (400). An accepted event is committed to the queue before we answer
202, so a delivery we acknowledged is never lost to a restart; Vercel's re-deliveries of one event
(same event id) are queued once.

The queue is a table of the history database (`schema.webhook_queue`, SQLite file or Postgres),
because the intake and the Dagster daemon are different processes and the daemon must see and ack
rows atomically. The sensor reads `pending(limit)`, requests runs keyed by deployment id, and calls
`ack(ids)` afterwards. Acked rows stay (with `acked_at`) so a late re-delivery stays a duplicate;
`prune()` bounds the table.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterable, Sequence
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from atge_assets.lib.history.engine import make_engine
from atge_assets.lib.history.migrations import migrate
from atge_assets.lib.history.schema import md
from atge_assets.lib.history.schema import webhook_queue as _queue
from atge_assets.lib.providers.base import is_deployment_id

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "x-vercel-signature"
QUEUED_TYPES = frozenset({"deployment.succeeded", "deployment.ready", "deployment.promoted"})
MAX_BODY = 1 << 20  # Vercel's deployment events are a few kB; git metadata is the bulk
DEFAULT_PATH = "/webhooks/vercel"



# -- parsing -----------------------------------------------------------------------------------


class BadEvent(ValueError):
    """A signed delivery we cannot use; the message is the reason given back in the 400."""


@dataclass(frozen=True)
class VercelEvent:
    event_id: str
    event_type: str
    deployment_id: str
    project_id: str | None
    target: str  # "production" or "preview"
    url: str | None
    created_ms: int | None
    meta: dict


@dataclass(frozen=True)
class IntakeEntry:
    id: int  # the queue row: what `ack` takes
    event_id: str
    event_type: str
    deployment_id: str
    project_id: str | None
    target: str
    url: str | None
    created_ms: int | None
    received_at: float
    meta: dict


def vercel_signature(body: bytes, secret: str) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()


def verify_vercel_signature(body: bytes, header_value: str | None,
                            secrets: str | Sequence[str]) -> bool:
    """Constant-time check against each secret (more than one while rotating)."""
    if not header_value:
        return False
    given = header_value.strip().lower().encode("utf-8", "replace")
    ok = False
    for secret in ([secrets] if isinstance(secrets, str) else secrets):
        # No early exit: the time taken does not say which secret matched.
        ok |= hmac.compare_digest(vercel_signature(body, secret).encode(), given)
    return ok


def parse_event(body: bytes, accept: Iterable[str] = QUEUED_TYPES) -> VercelEvent | None:
    """The deployment event in a (verified) delivery; None for a type we do not queue."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BadEvent("body is not valid JSON") from None
    if not isinstance(doc, dict):
        raise BadEvent("body is not a JSON object")
    event_type = doc.get("type")
    if not isinstance(event_type, str) or not event_type:
        raise BadEvent("no string 'type'")
    if event_type not in accept:
        return None
    payload = doc.get("payload")
    if not isinstance(payload, dict):
        raise BadEvent(f"{event_type}: no 'payload' object")
    dep = payload.get("deployment")
    dep_id = dep.get("id") if isinstance(dep, dict) else None
    if not isinstance(dep_id, str) or not dep_id:
        raise BadEvent(f"{event_type}: no string 'payload.deployment.id'")
    if not is_deployment_id(dep_id):
        raise BadEvent(f"{event_type}: 'payload.deployment.id' is not a deployment id")
    project = payload.get("project")
    project_id = project.get("id") if isinstance(project, dict) else None
    if not isinstance(project_id, str) or not project_id:
        project_id = payload.get("projectId") if isinstance(payload.get("projectId"), str) else None
    target = payload.get("target")
    url = dep.get("url")
    meta = dep.get("meta") if isinstance(dep.get("meta"), dict) else {}
    created = doc.get("createdAt")
    event_id = doc.get("id")
    if not isinstance(event_id, str) or not event_id:
        # Without Vercel's id, type + deployment still makes re-deliveries collapse into one row.
        event_id = f"{event_type}:{dep_id}"
    return VercelEvent(
        event_id=event_id[:255],
        event_type=event_type,
        deployment_id=dep_id,
        project_id=project_id,
        target="production" if target == "production" else "preview",
        url=url if isinstance(url, str) and url else None,
        created_ms=int(created) if isinstance(created, (int, float))
        and not isinstance(created, bool) else None,
        meta={str(k): str(v)[:500] for k, v in list(meta.items())[:50]},
    )


# -- the queue ---------------------------------------------------------------------------------


class IntakeQueue:
    """Durable FIFO of received deployment events. Thread- and process-safe via the database."""

    def __init__(self, url_or_engine: "str | sa.Engine"):
        self._own = isinstance(url_or_engine, str)
        self.engine = make_engine(url_or_engine) if self._own else url_or_engine
        # The intake may be the first process to reach a database (or the first after an
        # upgrade): it brings the whole history schema up, so versions stay stamped.
        migrate(self.engine, md)

    def put(self, ev: VercelEvent) -> tuple[int, bool]:
        """Queue `ev`; returns (row id, True) or, for an event id seen before, (its row, False)."""
        try:
            with self.engine.begin() as conn:
                row_id = conn.execute(_queue.insert().values(
                    event_id=ev.event_id, event_type=ev.event_type,
                    deployment_id=ev.deployment_id, project_id=ev.project_id, target=ev.target,
                    url=ev.url, created_ms=ev.created_ms, meta=json.dumps(ev.meta, sort_keys=True),
                    received_at=time.time(),
                )).inserted_primary_key[0]
            return int(row_id), True
        except IntegrityError:
            with self.engine.connect() as conn:
                row_id = conn.execute(sa.select(_queue.c.id)
                                      .where(_queue.c.event_id == ev.event_id)).scalar_one()
            return int(row_id), False

    def pending(self, limit: int = 100) -> list[IntakeEntry]:
        """Oldest first, not yet acked."""
        q = (sa.select(_queue).where(_queue.c.acked_at.is_(None))
             .order_by(_queue.c.id).limit(max(1, int(limit))))
        with self.engine.connect() as conn:
            return [_entry(r._mapping) for r in conn.execute(q)]

    def ack(self, ids: Iterable[int]) -> int:
        """Mark entries done; returns how many were pending. Unknown or repeated ids are fine."""
        ids = sorted({int(i) for i in ids})
        if not ids:
            return 0
        with self.engine.begin() as conn:
            return conn.execute(_queue.update()
                                .where(_queue.c.id.in_(ids), _queue.c.acked_at.is_(None))
                                .values(acked_at=time.time())).rowcount

    def prune(self, older_than_s: float = 30 * 86400) -> int:
        """Forget acked entries older than this (re-deliveries come within hours, not weeks)."""
        with self.engine.begin() as conn:
            return conn.execute(_queue.delete().where(
                _queue.c.acked_at.is_not(None),
                _queue.c.acked_at < time.time() - older_than_s)).rowcount

    def dispose(self) -> None:
        if self._own:
            self.engine.dispose()


def _entry(m) -> IntakeEntry:
    return IntakeEntry(id=m["id"], event_id=m["event_id"], event_type=m["event_type"],
                       deployment_id=m["deployment_id"], project_id=m["project_id"],
                       target=m["target"], url=m["url"], created_ms=m["created_ms"],
                       received_at=m["received_at"], meta=json.loads(m["meta"] or "{}"))


# -- the HTTP endpoint -------------------------------------------------------------------------


class IntakeServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], queue: IntakeQueue, secret: str | Sequence[str], *,
                 path: str = DEFAULT_PATH, project_id: str | None = None,
                 max_body: int = MAX_BODY, accept: Iterable[str] = QUEUED_TYPES):
        secrets = [secret] if isinstance(secret, str) else list(secret)
        if not secrets or not all(secrets):
            # An intake that cannot verify would queue runs for anyone who finds the URL.
            raise ValueError("a webhook secret is required (ATGE_VERCEL_WEBHOOK_SECRET)")
        self.queue = queue
        self._secrets = secrets
        self.path = path
        self.project_id = project_id or None
        self.max_body = max_body
        self.accept = frozenset(accept)
        super().__init__(addr, _Handler)

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def url(self) -> str:
        return self.base_url + self.path

    def start_background(self) -> threading.Thread:
        t = threading.Thread(target=self.serve_forever, name="atge-intake", daemon=True)
        t.start()
        return t

    def __repr__(self) -> str:  # never the secret
        return f"IntakeServer({self.url!r})"


class _Handler(BaseHTTPRequestHandler):
    server: IntakeServer
    protocol_version = "HTTP/1.1"
    timeout = 15  # a sender that stalls mid-body must not hold a thread forever

    def setup(self):
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, fmt, *args):
        log.debug("intake: " + fmt, *args)

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        if self.close_connection:
            self.send_header("connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if urlsplit(self.path).path == "/healthz":
            return self._send(200, {"status": "ok"})
        return self._send(404, {"error": "not found"})

    def do_POST(self):
        srv = self.server
        if urlsplit(self.path).path != srv.path:
            self.close_connection = True  # the body is unread; do not parse it as a request
            return self._send(404, {"error": "not found"})
        raw = self._read_body(srv.max_body)
        if raw is None:
            return
        if not verify_vercel_signature(raw, self.headers.get(SIGNATURE_HEADER), srv._secrets):
            reason = "missing signature" if not self.headers.get(SIGNATURE_HEADER) else \
                "signature mismatch"
            log.warning("rejected a webhook delivery from %s: %s (%d bytes)",
                        self.client_address[0], reason, len(raw))
            return self._send(403, {"error": reason})
        try:
            ev = parse_event(raw, srv.accept)
        except BadEvent as exc:
            log.warning("rejected a signed webhook delivery: %s", exc)
            return self._send(400, {"error": str(exc)})
        if ev is None:
            return self._send(202, {"status": "ignored", "reason": "event type not queued"})
        if srv.project_id and ev.project_id != srv.project_id:
            return self._send(202, {"status": "ignored", "reason": "another project"})
        try:
            row_id, new = srv.queue.put(ev)
        except Exception:
            # 5xx makes Vercel deliver again later; a 2xx here would lose the deployment.
            log.exception("could not queue %s for %s", ev.event_type, ev.deployment_id)
            return self._send(503, {"error": "queue unavailable"})
        if new:
            log.info("queued %s %s (%s) as #%d", ev.event_type, ev.deployment_id, ev.target,
                     row_id)
        return self._send(202, {"status": "queued" if new else "duplicate", "id": row_id,
                                "deployment_id": ev.deployment_id})

    def _read_body(self, limit: int) -> bytes | None:
        """The raw body, or None after answering the error."""
        if "chunked" in (self.headers.get("transfer-encoding") or "").lower():
            self.close_connection = True
            self._send(411, {"error": "content-length required"})
            return None
        try:
            n = int(self.headers.get("content-length") or "")
        except ValueError:
            self.close_connection = True
            self._send(411, {"error": "content-length required"})
            return None
        if n < 0:
            self.close_connection = True
            self._send(400, {"error": "bad content-length"})
            return None
        if n > limit:
            self.close_connection = True
            self._send(413, {"error": f"body over {limit} bytes"})
            return None
        try:
            raw = self.rfile.read(n)
        except OSError:  # includes the socket timeout
            self.close_connection = True
            return None
        if len(raw) < n:
            self.close_connection = True
            self._send(400, {"error": "body shorter than content-length"})
            return None
        return raw


def serve(host: str, port: int, queue_url: str, secret: str | Sequence[str], **kw) -> IntakeServer:
    return IntakeServer((host, port), IntakeQueue(queue_url), secret, **kw)
