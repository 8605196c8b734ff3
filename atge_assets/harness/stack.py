"""Run the whole system (`atge up`) as a child process and watch it: for the end-to-end test and
the deploy-to-rollback benchmark, which must see exactly what a user sees."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from atge_assets.harness.instance import instance_yaml


def stop_process(proc: subprocess.Popen, sig: int, timeout_s: float, *, group: bool) -> int:
    """`sig` to the process (or its whole process group), then SIGKILL if it is still running
    after `timeout_s`: to its group when it leads one (`atge up`'s children would otherwise
    outlive it, holding their ports), else to it alone; its exit code."""
    if proc.poll() is None:
        if group:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            try:
                leads = os.getpgid(proc.pid) == proc.pid
            except ProcessLookupError:  # it ended just now
                leads = False
            if leads:
                os.killpg(proc.pid, signal.SIGKILL)
            else:
                proc.kill()
            proc.wait()
    return proc.returncode


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Stack:
    proc: subprocess.Popen
    sandbox_url: str
    ui_url: str
    home: Path
    log_path: Path

    def sandbox(self, method: str, path: str, body: dict | None = None) -> dict:
        r = httpx.request(method, self.sandbox_url + path, json=body, timeout=10)
        r.raise_for_status()
        return r.json()

    def deploy(self, **body) -> str:
        return self.sandbox("POST", "/_sandbox/deployments", body)["id"]

    def status(self) -> dict:
        return self.sandbox("GET", "/_sandbox/status")

    def graphql(self, query: str, variables: dict | None = None, attempts: int = 10) -> dict:
        return graphql(self.ui_url, query, variables, attempts)

    def wait_for(self, predicate, timeout_s: float, poll_s: float = 0.5):
        def check():
            if self.proc.poll() is not None:
                raise RuntimeError(f"atge up exited with {self.proc.returncode}; see {self.log_path}")
            return predicate()

        return wait_until(check, timeout_s, poll_s, what=f"condition (see {self.log_path})")

    def ui_ready(self) -> bool:
        try:
            return httpx.get(self.ui_url + "/server_info", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self, timeout_s: float = 60) -> int:
        # `atge up` stops its own children on SIGTERM; the group is killed only if it hangs.
        return stop_process(self.proc, signal.SIGTERM, timeout_s, group=False)


def start(home: Path, *, extra_env: dict | None = None, up_args: tuple[str, ...] = ()) -> Stack:
    """`atge up` on free ports under `home`; `up_args` are more of its options
    (`--rolling-release`)."""
    home.mkdir(parents=True, exist_ok=True)
    sb, ui = free_port(), free_port()
    env = dict(os.environ, ATGE_HOME=str(home), DAGSTER_HOME=str(home / "dagster"),
               **(extra_env or {}))
    log_path = home / "atge-up.log"
    atge = Path(sys.executable).parent / "atge"
    cmd = [str(atge)] if atge.exists() else [sys.executable, "-m", "atge_assets.cli"]
    proc = subprocess.Popen(
        cmd + ["up", "--port", str(ui), "--sandbox-port", str(sb), *up_args],
        env=env, stdout=open(log_path, "w"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    return Stack(proc, f"http://127.0.0.1:{sb}", f"http://127.0.0.1:{ui}", home, log_path)


class Topology:
    """The production shape on one machine: a code server, `dagster-daemon run` and
    `dagster-webserver`, each its own process, all on Postgres, plus the sandbox as the provider.

    Used by the fault-scenario script and its test to kill and restart pieces one at a time.
    """

    def __init__(self, home: Path, database_url: str, *, extra_env: dict | None = None,
                 front: bool = False, front_listen: str = "127.0.0.1"):
        self.home = home
        home.mkdir(parents=True, exist_ok=True)
        (home / "dagster").mkdir(exist_ok=True)
        root = Path(__file__).resolve().parents[2]
        self.sandbox_port, self.grpc_port, self.ui_port = free_port(), free_port(), free_port()
        self.sandbox_url = f"http://127.0.0.1:{self.sandbox_port}"
        self.ui_url = f"http://127.0.0.1:{self.ui_port}"
        self.env = dict(
            os.environ, DAGSTER_HOME=str(home / "dagster"), ATGE_HOME=str(home),
            ATGE_DATABASE_URL=database_url, VERCEL_API_URL=self.sandbox_url,
            VERCEL_PROJECT_ID="prj_atge_sandbox", VERCEL_TOKEN="sandbox-token",
            ATGE_LATENCY_SCALE="0.005", ATGE_SENSOR_INTERVAL_S="5",
            # The sandbox protects its deployments, as Vercel does by default.
            VERCEL_AUTOMATION_BYPASS_SECRET=secrets.token_urlsafe(24), **(extra_env or {}),
        )
        (home / "dagster" / "dagster.yaml").write_text(
            instance_yaml((root / "dagster.yaml").read_text(), self.env))
        self.workspace = home / "workspace.yaml"
        self.workspace.write_text(
            "load_from:\n  - grpc_server:\n      host: 127.0.0.1\n"
            f"      port: {self.grpc_port}\n      location_name: atge_assets\n")
        self.bindir = Path(sys.executable).parent
        self.procs: dict[str, subprocess.Popen] = {}
        # The authenticating front (harness/front.py), off by default: the drills talk to the
        # loopback webserver directly. Its password comes from ATGE_FRONT_PASSWORD or is made
        # here; it stays in memory, never on a command line.
        self.front, self.front_listen = None, front_listen
        self.front_port = free_port() if front else None
        if front:
            self.front_url = f"http://127.0.0.1:{self.front_port}"
            self.front_user = "atge"
            self.front_password = (os.environ.get("ATGE_FRONT_PASSWORD")
                                   or secrets.token_urlsafe(24))
        # No child (runs included, which may print their environment) needs the front's password.
        self.env.pop("ATGE_FRONT_PASSWORD", None)

    def _spawn(self, name: str, cmd: list[str]) -> subprocess.Popen:
        log = open(self.home / f"{name}.log", "a")
        p = subprocess.Popen(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                             start_new_session=True, cwd=self.home)
        self.procs[name] = p
        return p

    def start_sandbox(self):
        return self._spawn("sandbox", [sys.executable, "-m", "atge_assets.cli", "sandbox", "serve",
                                       "--port", str(self.sandbox_port), "--scale", "0.005"])

    def start_code_server(self):
        return self._spawn("code-server", [str(self.bindir / "dagster"), "code-server", "start",
                                           "-m", "atge_assets.definitions", "-h", "127.0.0.1",
                                           "-p", str(self.grpc_port)])

    def start_daemon(self):
        return self._spawn("daemon", [str(self.bindir / "dagster-daemon"), "run",
                                      "-w", str(self.workspace)])

    def start_webserver(self):
        return self._spawn("webserver", [str(self.bindir / "dagster-webserver"),
                                         "-w", str(self.workspace), "-h", "127.0.0.1",
                                         "-p", str(self.ui_port)])

    def start_front(self):
        from atge_assets.harness import front

        self.front = front.start(self.home / "front", port=self.front_port,
                                 upstream_port=self.ui_port, password=self.front_password,
                                 user=self.front_user, listen=self.front_listen,
                                 env=self.env)
        self.procs["front"] = self.front.proc
        return self.front.proc

    def start_all(self) -> None:
        self.start_sandbox()
        self.start_code_server()
        self.start_daemon()
        self.start_webserver()
        if self.front_port:
            self.start_front()

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        # A process that outlives a minute after SIGTERM (a code server draining on a loaded
        # machine) is killed: stopping must not fail the work it stops.
        stop_process(self.procs[name], sig, 60, group=True)

    def stop_all(self) -> None:
        for name in ("front", "webserver", "daemon", "code-server", "sandbox"):
            if name in self.procs and self.procs[name].poll() is None:
                self.kill(name, signal.SIGTERM)

    def sandbox(self, method: str, path: str, body: dict | None = None) -> dict:
        r = httpx.request(method, self.sandbox_url + path, json=body, timeout=10)
        r.raise_for_status()
        return r.json()

    def ready(self) -> bool:
        try:
            return (httpx.get(self.ui_url + "/server_info", timeout=2).status_code == 200
                    and httpx.get(self.sandbox_url + "/_sandbox/status", timeout=2).is_success)
        except httpx.HTTPError:
            return False

    def graphql(self, query: str, variables: dict | None = None, attempts: int = 10) -> dict:
        return graphql(self.ui_url, query, variables, attempts)


def graphql(ui_url: str, query: str, variables: dict | None = None, attempts: int = 10) -> dict:
    """The webserver's GraphQL API, as the UI calls it; the `data` of the answer."""
    for attempt in range(attempts):
        r = httpx.post(ui_url + "/graphql",
                       json={"query": query, "variables": variables or {}}, timeout=30)
        # Right after a database restart the webserver answers 500 until it reconnects.
        if r.status_code < 500 or attempt + 1 == attempts:
            break
        time.sleep(2)
    r.raise_for_status()
    body = r.json()
    if body.get("errors"):
        raise RuntimeError(f"GraphQL errors: {body['errors']}")
    return body["data"]


def wait_until(predicate, timeout_s: float, poll_s: float = 0.5, what: str = "condition"):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll_s)
    raise TimeoutError(f"{what} not met within {timeout_s}s")
