"""The authenticating front (nginx, HTTP basic auth) before the real Dagster webserver.

Dagster OSS's webserver has no login and a launched run approves a promotion, so the only way in
must be the front: nothing without the right credentials, everything the UI needs (GraphQL, its
websocket, launches) with them, and the webserver itself reachable on loopback only.
"""

import base64
import ipaddress
import json
import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from atge_assets.harness import front
from atge_assets.harness.instance import instance_yaml
from atge_assets.harness.stack import Topology, free_port, wait_until
from atge_assets_tests.conftest import WORKSPACE, loaded_locations

PROJECT_ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

RUNS = "{ runsOrError { ... on Runs { results { runId status jobName } } } }"
LAUNCH = """
mutation($p: ExecutionParams!) { launchRun(executionParams: $p) {
  __typename ... on LaunchRunSuccess { run { runId status } } ... on PythonError { message }
  ... on RunConfigValidationInvalid { errors { message } } } }
"""


ADD_PARTITION = """
mutation($r: RepositorySelector!, $k: String!) {
  addDynamicPartition(repositorySelector: $r, partitionsDefName: "deployments", partitionKey: $k)
  { __typename } }
"""


def audit_lines(gate: front.Front) -> list[dict]:
    if not gate.audit_log.exists():
        return []
    return [json.loads(line) for line in gate.audit_log.read_text().splitlines()]


def require_nginx() -> str:
    """Skip without nginx, with the reason, except under CI (CI=true), where a missing nginx is a
    failure: CI must never pass by skipping what it was asked to run."""
    nginx = front.nginx_binary()
    if nginx is None:
        reason = "nginx is not installed (Debian: apt-get install -y nginx)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI needs nginx: {reason}")
        pytest.skip(reason)
    return nginx


def listeners(port: int) -> set[str]:
    """The local addresses with a socket listening on `port`, from the kernel's own tables."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            addr, p = local.split(":")
            if state != "0A" or int(p, 16) != port:  # 0A: LISTEN
                continue
            raw = bytes.fromhex(addr)
            # The kernel prints each 32-bit word in host (little-endian) order.
            words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
            ip = ipaddress.ip_address(words)
            found.add(str(ip.ipv4_mapped or ip) if ip.version == 6 else str(ip))
    return found


def every_cmdline() -> str:
    out = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                out.append(Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"))
            except OSError:
                pass
    return "\n".join(out)


def everything_written(root: Path) -> bytes:
    return b"\n".join(p.read_bytes() for p in root.rglob("*") if p.is_file())


def test_the_topology_starts_its_front_when_asked(tmp_path):
    """The production Topology's option, wired: the front stands before the webserver's port
    (nothing listens there yet, so good credentials get nginx's 502, bad ones its 401)."""
    require_nginx()
    topo = Topology(tmp_path / "topo", "postgresql://unused@127.0.0.1:9/unused", front=True)
    assert Topology(tmp_path / "plain", "postgresql://unused@127.0.0.1:9/unused").front_port is None
    try:
        topo.start_front()
        wait_until(lambda: httpx.get(topo.front_url + "/_front/health", timeout=2).status_code
                   == 200 if topo.front.proc.poll() is None else pytest.fail(
                       topo.front.error_log.read_text()), 30, what="the front")
        auth = (topo.front_user, topo.front_password)
        assert httpx.get(topo.front_url + "/", timeout=5).status_code == 401
        assert httpx.get(topo.front_url + "/", auth=("atge", "nope"), timeout=5).status_code == 401
        assert httpx.get(topo.front_url + "/", auth=auth, timeout=5).status_code == 502
        assert topo.front_password.encode() not in everything_written(topo.home)
        assert topo.front_password not in every_cmdline()
    finally:
        topo.stop_all()
    assert topo.procs["front"].returncode == 0


@pytest.mark.slow
def test_only_authenticated_people_reach_the_webserver(tmp_path):
    require_nginx()
    home = tmp_path / "dagster"
    home.mkdir()
    env = {"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8",
           "PYTHONPATH": str(PROJECT_ROOT), "DAGSTER_HOME": str(home),
           "ATGE_HOME": str(tmp_path / "atge"),
           # For a launch of the benchmark job (an approval) to pass config; nothing is called.
           "VERCEL_TOKEN": "front-test-token", "VERCEL_PROJECT_ID": "prj_front_test"}
    # The project's instance file: its run queue holds launched runs until a daemon takes them,
    # and no daemon runs here, so a launch is recorded and nothing executes.
    (home / "dagster.yaml").write_text(
        instance_yaml((PROJECT_ROOT / "dagster.yaml").read_text(), env))
    ui_port, front_port = free_port(), free_port()
    log = open(tmp_path / "webserver.log", "w")
    web = subprocess.Popen([str(BIN / "dagster-webserver"), "-w", "workspace.yaml",
                            "-h", "127.0.0.1", "-p", str(ui_port)], cwd=PROJECT_ROOT, env=env,
                           stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    password = secrets.token_urlsafe(24)
    good = ("atge", password)
    gate = None
    try:
        gate = front.start(tmp_path / "front", port=front_port, upstream_port=ui_port,
                           password=password, env=env)

        def gql(query, variables=None, auth=good):
            return httpx.post(gate.url + "/graphql", auth=auth, timeout=30,
                              json={"query": query, "variables": variables or {}})

        def loaded():
            for p, what in ((web, "webserver.log"), (gate.proc, "front/error.log")):
                if p.poll() is not None:
                    pytest.fail((tmp_path / what).read_text()[-3000:])
            try:
                return loaded_locations(gql(WORKSPACE).json())
            except (httpx.HTTPError, ValueError):
                return None

        # Through the front, with credentials: the UI's API serves the code location.
        states = wait_until(loaded, 240, 1.0, what="the code location, through the front")
        assert [s["__typename"] for _, s in states] == ["RepositoryLocation"], states
        location = states[0][0]
        page = httpx.get(gate.url + "/assets", auth=good, timeout=10)
        assert page.status_code == 200 and "<html" in page.text.lower()

        # Without credentials, or with wrong ones: 401 for the UI, its assets and the API.
        for auth in (None, ("atge", password + "x"), ("admin", password), ("atge", "")):
            assert httpx.get(gate.url + "/assets", auth=auth, timeout=10).status_code == 401
            assert httpx.get(gate.url + "/", auth=auth, timeout=10).status_code == 401
            assert httpx.get(gate.url + "/server_info", auth=auth, timeout=10).status_code == 401
            r = gql(WORKSPACE, auth=auth)
            assert r.status_code == 401 and "RepositoryLocation" not in r.text
        # The password as a bearer token counts for nothing: basic auth only.
        r = httpx.post(gate.url + "/graphql", json={"query": WORKSPACE}, timeout=10,
                       headers={"Authorization": "Bearer " + password})
        assert r.status_code == 401

        # A launch (here: an approval) is refused without credentials and leaves no run.
        params = {"selector": {"repositoryLocationName": location,
                               "repositoryName": "__repository__",
                               "jobName": "releases_job"}, "runConfigData": {}}
        for auth in (None, ("atge", "guess"), ("mallory", password)):
            assert gql(LAUNCH, {"p": params}, auth=auth).status_code == 401
        assert gql(RUNS).json()["data"]["runsOrError"]["results"] == []
        # Refused attempts are attributed to nobody: not one audit line, whatever user they named.
        assert audit_lines(gate) == []
        r = gql(LAUNCH, {"p": params})
        assert r.status_code == 200, r.text
        launched = r.json()["data"]["launchRun"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        runs = gql(RUNS).json()["data"]["runsOrError"]["results"]
        assert [x["runId"] for x in runs] == [launched["run"]["runId"]]

        # A person's approval, as the README says to give one: the deployment's partition, then
        # `promotion` launched with {decision: accept, by}. The front's audit log names who was
        # authenticated for each mutation, and what they typed as `by`; reads are not logged.
        repo = {"repositoryLocationName": location, "repositoryName": "__repository__"}
        r = gql(ADD_PARTITION, {"r": repo, "k": "dpl_audited"})
        assert r.json()["data"]["addDynamicPartition"]["__typename"] == \
            "AddDynamicPartitionSuccess", r.text
        approve = {"selector": dict(repo, jobName="benchmark_deployment",
                                    assetSelection=[{"path": ["promotion"]}]),
                   "runConfigData": {"ops": {"promotion": {"config": {
                       "decision": "accept", "by": "alice.ops"}}}},
                   "executionMetadata": {"tags": [{"key": "dagster/partition",
                                                   "value": "dpl_audited"}]}}
        r = gql(LAUNCH, {"p": approve})
        assert r.json()["data"]["launchRun"]["__typename"] == "LaunchRunSuccess", r.text
        lines = wait_until(lambda: len(audit_lines(gate)) >= 3 and audit_lines(gate), 30, 0.2,
                           what="three audit lines")
        assert [(x["user"], x["mutation"], x["by"]) for x in lines] == [
            ("atge", "launchRun", ""), ("atge", "addDynamicPartition", ""),
            ("atge", "launchRun", "alice.ops")]
        assert all(x["status"] == 200 and x["upstream_status"] == "200" for x in lines)
        assert json.loads(lines[2]["body"])["variables"]["p"]["executionMetadata"] == \
            approve["executionMetadata"]  # the body, to check the fields against
        # GraphQL in the URL would run a mutation the audit log cannot see: refused.
        sneaky = httpx.get(gate.url + "/graphql", auth=good, timeout=10, params={
            "query": "mutation { launchRun(executionParams: {}) { __typename } }"})
        assert sneaky.status_code == 403
        # (Refused before authentication, so without credentials too; it tells nothing.)
        assert httpx.get(gate.url + "/graphql?query=x", timeout=10).status_code == 403
        assert len(audit_lines(gate)) == 3

        # The UI's live updates: a GraphQL websocket, upgraded through the front with credentials.
        from websockets.exceptions import InvalidStatus
        from websockets.sync.client import connect

        ws_url = f"ws://127.0.0.1:{front_port}/graphql"
        basic = "Basic " + base64.b64encode(f"atge:{password}".encode()).decode()
        with pytest.raises(InvalidStatus) as refused:
            connect(ws_url, subprotocols=["graphql-ws"], open_timeout=30).close()
        assert refused.value.response.status_code == 401
        with connect(ws_url, subprotocols=["graphql-ws"], open_timeout=30,
                     additional_headers={"Authorization": basic}) as ws:
            ws.send(json.dumps({"type": "connection_init", "payload": {}}))
            assert json.loads(ws.recv(timeout=30))["type"] == "connection_ack"

        # The webserver itself listens on loopback only; the front is the way in.
        assert listeners(ui_port) == {"127.0.0.1"}
        assert listeners(front_port) == {"127.0.0.1"}

        # The password is on no command line and in nothing written (logs, config, instance).
        assert password not in every_cmdline()
        assert password.encode() not in everything_written(tmp_path)
        access = (tmp_path / "front" / "access.log").read_text()
        assert "/graphql" in access and password not in access
    finally:
        if gate:
            gate.stop()
        if web.poll() is None:
            # The group: the webserver's own code-server child goes with it.
            os.killpg(web.pid, signal.SIGTERM)
            try:
                web.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(web.pid, signal.SIGKILL)
                web.wait()
        log.close()
