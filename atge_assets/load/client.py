"""A small HTTP/1.1 client on asyncio and llhttp (httptools): one keep-alive connection per
virtual user, a fraction of the CPU per request that a general-purpose client costs.
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

import httptools

from atge_assets.lib.http import check_url
from atge_assets.load.spec import LoadSpec


# -- the client ----------------------------------------------------------------------------------
class _Conn(asyncio.Protocol):
    """One HTTP/1.1 keep-alive connection carrying one request at a time.

    A load generator needs each answer's status and end, nothing more, so this is the whole
    client: llhttp (via httptools) finds where answers end and bodies are dropped. Here it costs
    about a quarter of aiohttp's CPU per request, and a generator's CPU per request is both its
    ceiling and the noise it adds to the latencies it measures.
    """

    def __init__(self):
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future | None = None
        self.status: int | None = None
        self.reusable = True

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._settle(exc=exc)
            self.transport.close()

    def connection_lost(self, exc):
        self.transport = None
        if self.status is not None:  # a body that ends with the connection is complete
            self._settle(self.status)
        else:
            self._settle(exc=exc or ConnectionResetError("connection closed before an answer"))

    def on_headers_complete(self):
        self.status = self.parser.get_status_code()

    def on_message_complete(self):
        if self.status is not None and 100 <= self.status < 200:
            self.status = None  # 103 Early Hints and the like: the real answer follows
            return
        self.reusable = self.parser.should_keep_alive()
        self._settle(self.status)

    def _settle(self, status=None, exc=None):
        w = self.waiter
        if w is not None and not w.done():
            w.set_exception(exc) if exc else w.set_result(status)

    async def roundtrip(self, request: bytes) -> int:
        self.status = None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return await self.waiter


@dataclass
class Target:
    host: str  # for TLS's server name
    addrs: list[str]  # resolved once; the one that last answered first
    port: int
    tls: ssl.SSLContext | None
    request: bytes  # built once: every request of a stage is the same bytes
    idempotent: bool

    @classmethod
    async def resolve(cls, spec: LoadSpec) -> Target:
        """Resolve the host once, refusing it if any address is link-local or metadata.

        check_url sees only the name; this closes the way round it through DNS, and pins the
        addresses, as wrk does, so a thousand users do not make a thousand lookups.
        """
        parts = urlsplit(spec.url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            infos = await asyncio.to_thread(socket.getaddrinfo, parts.hostname, port, 0,
                                            socket.SOCK_STREAM)
        except OSError as exc:
            raise ValueError(f"cannot resolve {parts.hostname!r}: {exc}") from None
        addrs = [info[4][0] for info in infos]
        for a in addrs:
            check_url(f"http://[{a}]/" if ":" in a else f"http://{a}/", ["*"])
        return cls.of(spec, list(dict.fromkeys(addrs)))

    @classmethod
    def of(cls, spec: LoadSpec, addrs: list[str]) -> Target:
        parts = urlsplit(spec.url)
        tls = ssl.create_default_context() if parts.scheme == "https" else None
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        method = spec.method.upper()
        body = b"" if spec.body is None else json.dumps(spec.body).encode()
        headers = {"host": parts.netloc, "user-agent": "atge-loadtest/0.1", "accept": "*/*"}
        if spec.body is not None:
            headers["content-type"] = "application/json"
        if body or method in ("POST", "PUT", "PATCH"):
            headers["content-length"] = str(len(body))
        headers.update({k.lower(): v for k, v in spec.headers.items()})
        head = f"{method} {path} HTTP/1.1\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in headers.items())
        return cls(host=parts.hostname, addrs=addrs, port=parts.port or (443 if tls else 80),
                   tls=tls, request=head.encode("latin-1") + b"\r\n" + body,
                   idempotent=method in ("GET", "PUT", "DELETE", "OPTIONS"))

    async def connect(self) -> _Conn:
        """A new connection to the first address that takes it ("localhost" may be ::1 first
        while the server listens on 127.0.0.1 only); that address is tried first next time."""
        loop = asyncio.get_running_loop()
        for i, addr in enumerate(self.addrs):
            try:
                _, conn = await loop.create_connection(
                    _Conn, addr, self.port, ssl=self.tls,
                    server_hostname=self.host if self.tls else None)
            except ssl.SSLError:
                raise  # the address answered; its certificate is the problem
            except OSError:
                if i == len(self.addrs) - 1:
                    raise
                continue
            if i:
                self.addrs.insert(0, self.addrs.pop(i))
            return conn
        raise ConnectionError("no address to connect to")


class Client:
    """A virtual user's connection: opened on first use, reopened after the server closes it."""

    def __init__(self, target: Target):
        self.target = target
        self.conn: _Conn | None = None

    async def request(self) -> int:
        conn, t = self.conn, self.target
        if conn is not None and conn.transport is not None and conn.reusable:
            try:
                return await conn.roundtrip(t.request)
            except ConnectionError:
                # A server may close an idle keep-alive connection as the request leaves: a race
                # every client meets. Browsers retry idempotent requests once; so does this.
                if conn.status is not None or not t.idempotent:
                    raise
        self.conn = await t.connect()
        return await self.conn.roundtrip(t.request)

    def close(self) -> None:
        if self.conn is not None and self.conn.transport is not None:
            self.conn.transport.close()
        self.conn = None
