"""Run the whole system (`atge up`) as a child process and watch it: for the end-to-end test and
the deploy-to-rollback benchmark, which must see exactly what a user sees."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx


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

    def wait_for(self, predicate, timeout_s: float, poll_s: float = 0.5):
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"atge up exited with {self.proc.returncode}; see {self.log_path}")
            value = predicate()
            if value:
                return value
            time.sleep(poll_s)
        raise TimeoutError(f"condition not met within {timeout_s}s; see {self.log_path}")

    def ui_ready(self) -> bool:
        try:
            return httpx.get(self.ui_url + "/server_info", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self, timeout_s: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode


def start(home: Path, *, extra_env: dict | None = None) -> Stack:
    home.mkdir(parents=True, exist_ok=True)
    sb, ui = free_port(), free_port()
    env = dict(os.environ, ATGE_HOME=str(home), DAGSTER_HOME=str(home / "dagster"),
               **(extra_env or {}))
    log_path = home / "atge-up.log"
    atge = Path(sys.executable).parent / "atge"
    cmd = [str(atge)] if atge.exists() else [sys.executable, "-m", "atge_assets.cli"]
    proc = subprocess.Popen(
        cmd + ["up", "--port", str(ui), "--sandbox-port", str(sb)],
        env=env, stdout=open(log_path, "w"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    return Stack(proc, f"http://127.0.0.1:{sb}", f"http://127.0.0.1:{ui}", home, log_path)
