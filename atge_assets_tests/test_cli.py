"""The `atge` command as a user runs it: a real process against a real sandbox."""

import json
import subprocess
import sys

import pytest


def atge(*args, env_url=None, check=True):
    out = subprocess.run([sys.executable, "-m", "atge_assets.cli", *args], capture_output=True,
                         text=True, timeout=120)
    if check:
        assert out.returncode == 0, out.stderr
    return out


def test_sandbox_deploy_and_status(sandbox):
    url = sandbox.base_url
    out = json.loads(atge("sandbox", "deploy", "--slowdown", "1.3", "--json", "--url", url).stdout)
    assert out["id"].startswith("dpl_")
    pre = json.loads(atge("sandbox", "deploy", "--target", "preview", "--errors", "0.05", "--json",
                          "--url", url).stdout)
    st = json.loads(atge("sandbox", "status", "--json", "--url", url).stdout)
    assert st["production"] == out["id"]
    assert [d["id"] for d in st["deployments"]][-2:] == [out["id"], pre["id"]]
    assert st["deployments"][-1]["errors"] == 0.05 and st["rollbacks"] == []


def test_sandbox_refuses_bad_input(sandbox):
    bad = atge("sandbox", "deploy", "--slowdown", "-1", "--url", sandbox.base_url, check=False)
    assert bad.returncode != 0 and "slowdown must be" in bad.stderr
    down = atge("sandbox", "status", "--url", "http://127.0.0.1:9", check=False)
    assert down.returncode != 0 and "cannot reach the sandbox" in down.stderr


def test_sandbox_state_survives_restart(tmp_path):
    from atge_assets.sandbox.state import SandboxState

    a = SandboxState(tmp_path / "s.json")
    dep = a.create(target="production", slowdown=1.2)
    a.rollback(a.world.deployments[0].id)
    b = SandboxState(tmp_path / "s.json")
    assert b.status()["production"] == a.world.deployments[0].id
    assert b.get(dep.id).slowdown == 1.2 and len(b.status()["rollbacks"]) == 1


@pytest.mark.parametrize("cmd", ["judge", "changepoints"])
def test_batch_tool_reports_a_missing_file(cmd, tmp_path):
    out = atge(cmd, "--batch", str(tmp_path / "nope.jsonl"), check=False)
    assert out.returncode == 2 and "cannot read" in out.stderr


def test_judge_batch_cli(tmp_path):
    import random

    rng = random.Random(3)
    base = [100 * rng.lognormvariate(0, 0.05) for _ in range(20)]
    lines = [
        {"id": "same", "baseline": base, "candidate": [x * rng.lognormvariate(0, 0.05)
                                                       for x in base]},
        {"id": "slow", "baseline": base, "candidate": [x * 1.3 for x in base], "threshold": 0.1},
    ]
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(json.dumps(x) for x in lines) + "\n{broken\n")
    out = atge("judge", "--batch", str(src), check=False)
    assert out.returncode == 1 and "1 malformed" in out.stderr
    res = [json.loads(x) for x in out.stdout.splitlines()]
    assert [r["id"] for r in res[:2]] == ["same", "slow"]
    assert res[0]["verdict"] == "pass" and res[0]["rollback"] is False
    assert res[1]["verdict"] == "regressed" and res[1]["rollback"] is True
    assert abs(res[1]["change"] - 0.3) < 0.02
    assert res[2]["error"] and res[2]["rollback"] is False


def test_a_reader_that_stops_early_ends_the_batch_quietly(tmp_path):
    src = tmp_path / "in.jsonl"
    line = json.dumps({"id": 1, "baseline": [100.0 + i for i in range(20)],
                       "candidate": [101.0 + i for i in range(20)]})
    src.write_text((line + "\n") * 20000)  # far more output than a pipe buffers
    proc = subprocess.Popen([sys.executable, "-m", "atge_assets.cli", "judge", "--batch", str(src)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert json.loads(proc.stdout.readline())["id"] == 1  # `| head -1`
    proc.stdout.close()
    assert proc.wait(timeout=120) == 0
    assert b"Traceback" not in proc.stderr.read()


def test_changepoints_batch_cli(tmp_path):
    src = tmp_path / "in.jsonl"
    step = [100.0 + (i % 3) for i in range(15)] + [140.0 + (i % 3) for i in range(15)]
    src.write_text(json.dumps({"id": "step", "series": step}) + "\n"
                   + json.dumps({"id": "flat", "series": [100.0, None] * 12}) + "\n")
    out = atge("changepoints", "--batch", str(src))
    res = [json.loads(x) for x in out.stdout.splitlines()]
    assert res[0] == {"id": "step", "changepoints": [15]} or res[0]["changepoints"] == [15]
    assert res[1]["id"] == "flat" and res[1]["changepoints"] == []
