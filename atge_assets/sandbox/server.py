"""One local HTTP server: the simulated ATGE app for every deployment, and Vercel's REST subset.

- ATGE:   /d/{deployment}/api/health, POST /d/{deployment}/api/einstein/analyze,
          GET /d/{deployment}/api/einstein/trade-history  (with a Server-Timing header)
- Vercel: GET /v6/deployments (and /v7, which Vercel's SDK calls), GET /v13/deployments/{id},
          GET /v9/projects/{id}, POST /v1/projects/{id}/rollback/{dep},
          POST /v10/projects/{id}/promote/{dep}, GET /v1/projects/{id}/rolling-release(/config),
          POST .../rolling-release/approve-stage and .../complete, PATCH and DELETE
          .../rolling-release/config, PATCH and DELETE /v9/projects/{id}, PATCH
          /v1/projects/{id}/protection-bypass: every operation of the OpenAPI excerpt, answers
          shaped as Vercel's description says (see vercel_payloads.py)
- Production URL: /p/... answers as the live deployment, or during a rolling release as the
          canary for the active stage's share of requests (marked with CANARY_HEADER when the
          config asks for `canaryResponseHeader`)
- Control (for `atge sandbox ...`): POST /_sandbox/deployments, GET /_sandbox/status,
          POST /_sandbox/faults, POST /_sandbox/rolling-release (the config: {"stages",
          "advancementType", "canaryResponseHeader"}, or {"stages": null} to turn it off),
          POST /_sandbox/poison (hostile list answers for the fault drills: poison.py)
The Vercel routes want `Authorization: Bearer <token>`, as the real API does, so tests exercise
the provider's header handling.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from atge_assets.lib.protection import BYPASS_HEADER
from atge_assets.sandbox import vercel_payloads
from atge_assets.sandbox.state import HANG_S, REFUSING_PORT, SandboxState

log = logging.getLogger(__name__)

DEFAULT_TOKEN = "sandbox-token"
# What Vercel's edge answers an automated client at a protected deployment: a login page, 401.
PROTECTED_PAGE = (b"<!doctype html><html><head><title>Authentication Required</title></head>"
                  b"<body>Authentication Required: this deployment is protected.</body></html>")
MAX_BODY = 1 << 20

_APP = re.compile(r"^/d/(?P<dep>[A-Za-z0-9_]+)(?P<path>/.*)$")
_PRODUCTION = re.compile(r"^/p(?P<path>/.*)$")
# Which deployment served a request to the production URL is Vercel's to say; the name of the
# header its `canaryResponseHeader` option adds is not in the OpenAPI description, so the
# sandbox names its own (ATGE_ROLLOUT_CANARY_HEADER tells the rollouts which one to read).
CANARY_HEADER = "x-sandbox-canary"


class SandboxServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # A load test opens hundreds of connections at once; the default backlog of 5 drops them.
    request_queue_size = 1024

    def __init__(self, addr: tuple[str, int], state: SandboxState, token: str = DEFAULT_TOKEN,
                 extensions: list | None = None, protection_bypass: str | None = None):
        from atge_assets.sandbox.extensions import default_extensions

        super().__init__(addr, Handler)
        self.state = state
        self.token = token
        # Deployment Protection as Vercel applies it: with a secret, deployment URLs answer 401
        # unless the request carries it in x-vercel-protection-bypass.
        self.protection_bypass = protection_bypass or None
        # Every secret that passes (PATCH .../protection-bypass adds and revokes them), each with
        # what Vercel's answer says of it.
        self.bypass_secrets: dict[str, dict] = {} if not self.protection_bypass else {
            self.protection_bypass: vercel_payloads.bypass_entry(int(time.time() * 1000))}
        self.extensions = default_extensions() if extensions is None else extensions

    def handle_error(self, request, client_address) -> None:
        # A client that gave up (a benchmark timeout, a load test ending) is not a server fault.
        exc = sys.exc_info()[1]
        if isinstance(exc, (BrokenPipeError, ConnectionResetError, TimeoutError)):
            log.debug("sandbox: client %s went away: %s", client_address, exc)
            return
        log.exception("sandbox: error while serving %s", client_address)

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def start_background(self) -> threading.Thread:
        # shutdown() waits out the poll interval (0.5 s by default); tests stop hundreds of these.
        t = threading.Thread(target=self.serve_forever, args=(0.05,), name="atge-sandbox",
                             daemon=True)
        t.start()
        return t


class Handler(BaseHTTPRequestHandler):
    server: SandboxServer
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        # Headers and body go out in separate writes; Nagle + delayed ACK would add ~40 ms to each.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, fmt, *args):  # keep the demo's console readable
        log.debug("sandbox: " + fmt, *args)

    # -- plumbing ------------------------------------------------------------------------------
    _lost_answer: tuple | None = None

    def _send(self, status: int, body, headers: dict | None = None) -> None:
        if self._lost_answer:
            (status, body, headers), self._lost_answer = self._lost_answer, None
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _send_raw(self, status: int, data: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> dict:
        n = int(self.headers.get("content-length") or 0)
        if n > MAX_BODY:
            raise ValueError("body too large")
        raw = self.rfile.read(n) if n else b""
        if not raw:
            return {}
        body = json.loads(raw)
        if not isinstance(body, dict):
            raise ValueError("body must be a JSON object")
        return body

    def do_GET(self):
        self._route("GET")

    def do_POST(self):
        self._route("POST")

    def do_PATCH(self):
        self._route("PATCH")

    def do_DELETE(self):
        self._route("DELETE")

    def _route(self, method: str) -> None:
        parts = urlsplit(self.path)
        path, query = parts.path, {k: v[-1] for k, v in parse_qs(parts.query).items()}
        try:
            for handle in self.server.extensions:
                if handle(self, method, path, query):
                    return None
            m = _APP.match(path)
            if m:
                return self._app(method, m["dep"], m["path"])
            m = _PRODUCTION.match(path)
            if m:
                dep, canary = self.server.state.serving()
                cfg = self.server.state.world.rolling_config
                marked = canary and bool(cfg and cfg["canaryResponseHeader"])
                return self._app(method, dep.id if dep else "", m["path"],
                                 {CANARY_HEADER: "1"} if marked else {})
            if path.startswith("/_sandbox/"):
                return self._control(method, path)
            return self._vercel(method, path, query)
        except (ValueError, json.JSONDecodeError) as exc:
            return self._send(400, {"error": {"code": "bad_request", "message": str(exc)}})

    # -- the simulated ATGE app ----------------------------------------------------------------
    def _app(self, method: str, dep_id: str, path: str, extra: dict | None = None) -> None:
        given = (self.headers.get(BYPASS_HEADER) or "").encode()
        if self.server.protection_bypass and not any(
                hmac.compare_digest(given, s.encode()) for s in list(self.server.bypass_secrets)):
            return self._send_raw(401, PROTECTED_PAGE, "text/html; charset=utf-8")
        st = self.server.state
        dep = st.get(dep_id)
        if dep is None or dep.state() != "READY":
            return self._send(404, {"error": "DEPLOYMENT_NOT_FOUND"})
        if dep.mode == "hang":
            time.sleep(HANG_S)
            return self._send(504, {"error": "FUNCTION_INVOCATION_TIMEOUT"})
        if path == "/api/health":
            return self._send(200, {"status": "ok", "deployment": dep_id}, extra)
        if path == "/api/einstein/analyze" and method == "POST":
            body = self._body()
            phases = ["collect", "ai", "db", "overhead"]
            symbol = str(body.get("symbol", "BTC"))[:16]
            result = {"symbol": symbol, "signal": "HOLD", "confidence": 0.62}
        elif path == "/api/einstein/trade-history" and method == "GET":
            phases = ["db"]
            result = {"trades": [{"symbol": "BTC", "side": "buy", "pnl": 12.5}]}
        else:
            return self._send(404, {"error": "NOT_FOUND"})
        timings = {p: st.phase_ms(dep, p) for p in phases}
        time.sleep(sum(timings.values()) / 1000.0)
        if st.fails(dep):
            return self._send(500, {"error": "INTERNAL_SERVER_ERROR"})
        header = ", ".join(f"{p};dur={v:.2f}" for p, v in timings.items() if p != "overhead")
        return self._send(200, result, {"server-timing": header, **(extra or {})})

    # -- Vercel's REST subset ------------------------------------------------------------------
    def _vercel(self, method: str, path: str, query: dict) -> None:
        auth = self.headers.get("authorization") or ""
        if not hmac.compare_digest(auth.encode(), f"Bearer {self.server.token}".encode()):
            return self._send(403, {"error": {"code": "forbidden", "message": "Not authorized"}})
        st = self.server.state
        with st._lock:
            fault = st.api_faults.pop(0) if st.api_faults else None
        if fault:
            error = {"error": {"code": "injected", "message": "fault"}}
            if fault.get("after"):
                # The action happens, but its answer is lost: what a timeout looks like.
                self._lost_answer = (fault["status"], error, fault.get("headers"))
            else:
                body = fault.get("body")
                return self._send(fault["status"], error if body is None else body,
                                  fault.get("headers"))
        pid = st.world.project_id
        if st.world.project_deleted:
            # Deleting a project deletes its deployments: nothing of it answers any more.
            return self._send(404, {"error": {"code": "not_found", "message": "project deleted"}})
        if method == "GET" and path in ("/v6/deployments", "/v7/deployments"):
            return self._send(200, self._list(query))
        m = re.fullmatch(r"/v13/deployments/([A-Za-z0-9_]+)", path)
        if method == "GET" and m:
            dep = st.get(m[1])
            if dep is None:
                return self._send(404, {"error": {"code": "not_found", "message": "no deployment"}})
            return self._send(200, vercel_payloads.deployment(dep, self._app_url(dep), pid,
                                                              dep.state()))
        if path == f"/v9/projects/{pid}" and method in ("GET", "PATCH", "DELETE"):
            return self._project(method)
        if method == "PATCH" and path == f"/v1/projects/{pid}/protection-bypass":
            return self._protection_bypass(self._body())
        m = re.fullmatch(r"/v1/projects/([^/]+)/rollback/([A-Za-z0-9_]+)", path)
        if method == "POST" and m and m[1] == pid:
            return self._act(st.rollback, m[2])
        m = re.fullmatch(r"/v10/projects/([^/]+)/promote/([A-Za-z0-9_]+)", path)
        if method == "POST" and m and m[1] == pid:
            return self._act(st.promote, m[2])
        m = re.fullmatch(r"/v1/projects/([^/]+)/rolling-release(/[a-z-]+)?", path)
        if m and m[1] == pid:
            return self._rolling(method, m[2] or "")
        return self._send(404, {"error": {"code": "not_found", "message": path}})

    def _rolling(self, method: str, action: str) -> None:
        st = self.server.state
        if method == "GET" and action == "/config":
            return self._send(200, vercel_payloads.rolling_config(st.world.rolling_config))
        if method in ("PATCH", "DELETE") and action == "/config":
            # As on Vercel, the config shapes the next releases only; one in flight goes on.
            body = self._body() if method == "PATCH" else {"enabled": False}
            if body.get("enabled") is False:
                st.configure_rolling(None)
            else:
                st.configure_rolling(body.get("stages") or [],  # none given: refused
                                     str(body.get("advancementType", "manual-approval")),
                                     bool(body.get("canaryResponseHeader")))
            return self._send(200, vercel_payloads.rolling_config(st.world.rolling_config))
        if method == "GET" and action == "":
            return self._send(200, self._release())
        if method == "POST" and action in ("/approve-stage", "/complete"):
            body = self._body()
            canary = body.get("canaryDeploymentId")
            index = body.get("nextStageIndex")
            if not isinstance(canary, str) or (action == "/approve-stage" and (
                    isinstance(index, bool) or not isinstance(index, (int, float)))):
                return self._send(400, {"error": {"code": "bad_request", "message":
                                                  "canaryDeploymentId and nextStageIndex needed"}})
            try:
                if action == "/complete":
                    st.complete_rolling(canary)
                else:
                    st.approve_stage(canary, int(index))
            except ValueError as exc:
                return self._send(400, {"error": {"code": "bad_request", "message": str(exc)}})
            return self._send(200, self._release())
        return self._send(404, {"error": {"code": "not_found", "message": action}})

    def _project(self, method: str) -> None:
        st = self.server.state
        if method == "DELETE":
            st.delete_project()
            return self._send_raw(204, b"", "application/json")
        if method == "PATCH":
            try:
                st.update_project(self._body())
            except (ValueError, TypeError) as exc:
                return self._send(400, {"error": {"code": "bad_request", "message": str(exc)}})
        prod = st.get(st.world.production) if st.world.production else None
        return self._send(200, vercel_payloads.project(
            st.world.project_id, prod, self._app_url(prod) if prod else "",
            prod.state() if prod else "", st.world.project_settings))

    def _protection_bypass(self, body: dict) -> None:
        """Vercel's rules: `revoke` drops a secret (and makes a new one if `regenerate`),
        `generate` adds the one given or a random one, an empty body adds a random one. Whether
        deployments are protected at all is the sandbox's start-up setting, not this."""
        secrets_ = self.server.bypass_secrets
        revoke, generate = body.get("revoke"), body.get("generate")
        if set(body) - {"revoke", "generate"} or not isinstance(revoke or {}, dict) \
                or not isinstance(generate or {}, dict):
            return self._send(400, {"error": {"code": "bad_request",
                                              "message": "only 'revoke' and 'generate' objects"}})
        now = int(time.time() * 1000)
        if revoke:
            if revoke.get("secret") not in secrets_:
                return self._send(404, {"error": {"code": "not_found",
                                                  "message": "no such bypass secret"}})
            del secrets_[revoke["secret"]]
        given = (generate or {}).get("secret")
        if given is not None and not re.fullmatch(r"[a-zA-Z0-9]{32}", str(given)):
            return self._send(400, {"error": {"code": "bad_request",
                                              "message": "a secret is 32 letters or digits"}})
        if given or not revoke or revoke.get("regenerate"):
            secrets_[given or vercel_payloads.new_bypass_secret()] = \
                vercel_payloads.bypass_entry(now)
        return self._send(200, {"protectionBypass": dict(secrets_)})

    def _release(self) -> dict:
        st = self.server.state
        return vercel_payloads.rolling_release(st.world.rolling_release, st.get, self._app_url)

    def _act(self, action, dep_id: str) -> None:
        try:
            action(dep_id)
        except KeyError:
            return self._send(404, {"error": {"code": "not_found", "message": dep_id}})
        except ValueError as exc:
            return self._send(409, {"error": {"code": "conflict", "message": str(exc)}})
        return self._send(201, {})

    def _app_url(self, dep) -> str:
        if dep.mode == "refuse":
            return f"http://127.0.0.1:{REFUSING_PORT}/d/{dep.id}"
        return f"{self.server.base_url}/d/{dep.id}"

    def _list(self, q: dict) -> dict:
        st = self.server.state
        if q.get("projectId") not in (None, st.world.project_id):
            return {"deployments": [], "pagination": {"count": 0, "next": None, "prev": None}}
        limit = max(1, min(100, int(q.get("limit", 20))))
        since = int(q["since"]) if q.get("since") else None
        until = int(q["until"]) if q.get("until") else None
        deps = sorted(st.world.deployments, key=lambda d: d.created_ms, reverse=True)
        rows = [
            d for d in deps
            if (since is None or d.created_ms >= since) and (until is None or d.created_ms < until)
            and (q.get("target") is None or (d.target == q["target"]))
            and (q.get("state") is None or d.state() in q["state"].split(","))
        ]
        page, more = rows[:limit], len(rows) > limit
        return {
            "deployments": [vercel_payloads.deployment_item(
                d, self._app_url(d), st.world.project_id, st.world.production, d.state())
                for d in page],
            "pagination": {"count": len(page), "next": page[-1].created_ms if more else None,
                           "prev": page[0].created_ms if page else None},
        }

    # -- control -------------------------------------------------------------------------------
    def _control(self, method: str, path: str) -> None:
        st = self.server.state
        if method == "GET" and path == "/_sandbox/status":
            return self._send(200, st.status())
        if method == "POST" and path == "/_sandbox/deployments":
            body = self._body()
            dep = st.create(
                target=str(body.get("target", "production")),
                slowdown=float(body.get("slowdown", 1.0)), errors=float(body.get("errors", 0.0)),
                build_s=float(body.get("build_s", 0.0)), mode=str(body.get("mode", "ok")),
            )
            return self._send(201, {"id": dep.id, "url": self._app_url(dep), "target": dep.target})
        if method == "POST" and path == "/_sandbox/rolling-release":
            body = self._body()
            cfg = st.configure_rolling(body.get("stages"),
                                       str(body.get("advancementType", "manual-approval")),
                                       bool(body.get("canaryResponseHeader")))
            return self._send(201, {"rollingRelease": cfg})
        if method == "POST" and path == "/_sandbox/faults":
            body = self._body()
            faults = [{"status": int(f["status"]), "body": f.get("body"),
                       "headers": {str(k): str(v) for k, v in f.get("headers", {}).items()},
                       "after": bool(f.get("after"))} for f in body.get("faults", [])]
            with st._lock:
                st.api_faults.extend(faults)
            return self._send(201, {"queued": len(faults)})
        return self._send(404, {"error": "NOT_FOUND"})


def serve(host: str, port: int, state_path: Path | None, *, scale: float, token: str,
          noise: float = 0.10, protection_bypass: str | None = None) -> SandboxServer:
    return SandboxServer((host, port), SandboxState(state_path, scale=scale, noise=noise), token,
                         protection_bypass=protection_bypass)
