"""The `atge` command as a user runs it: a real process against a real sandbox."""

import json
import subprocess
import sys
import time

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


# -- batch input the tools refuse line by line ---------------------------------------------------
def _judge_line(i, slowdown=1.0):
    base = [100.0 + (j * 7 + i) % 11 for j in range(20)]
    return json.dumps({"id": i, "baseline": base, "candidate": [x * slowdown for x in base]})


def _rows(stdout):
    return [json.loads(x) for x in stdout.splitlines()]


def test_judge_answers_every_valid_line_around_a_non_utf8_byte(tmp_path):
    src = tmp_path / "in.jsonl"
    bad = b'{"id": "latin-1", "note": "caf\xe9", "baseline": [1], "candidate": [1]}'
    src.write_bytes(b"\n".join([_judge_line(1).encode(), bad, _judge_line(2, 1.5).encode(),
                                b"\xff\xfe", _judge_line(3).encode()]) + b"\n")
    out = atge("judge", "--batch", str(src), check=False)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stderr == "atge: 2 malformed input line(s); see their 'error' fields\n"
    rows = _rows(out.stdout)
    assert [r["id"] for r in rows] == [1, None, 2, None, 3]
    assert rows[0]["verdict"] == "pass" and rows[2]["verdict"] == "regressed"
    assert rows[1]["line"] == 2 and rows[1]["error"] == (
        "line 2: not UTF-8: byte 0xe9 at byte 31 of the line")
    assert rows[3]["line"] == 4 and rows[3]["error"].startswith("line 4: not UTF-8: byte 0xff")
    assert rows[1]["verdict"] is None and rows[1]["rollback"] is False


def test_batch_from_stdin_takes_bytes_and_a_leading_bom():
    data = b"\xef\xbb\xbf" + _judge_line(1).encode() + b"\r\n\x80\n" + _judge_line(2).encode()
    out = subprocess.run([sys.executable, "-m", "atge_assets.cli", "judge", "--batch", "-"],
                         input=data, capture_output=True, timeout=120, check=False)
    assert out.returncode == 1 and b"Traceback" not in out.stderr
    rows = _rows(out.stdout.decode())
    assert [r["id"] for r in rows] == [1, None, 2] and rows[0]["error"] is None
    assert rows[1] == {"id": None, "line": 2, "error": "line 2: not UTF-8: byte 0x80 at byte 1 "
                       "of the line", "verdict": None, "decision": None, "rollback": False}


def test_an_overlong_line_is_refused_and_the_next_one_answered(tmp_path):
    from atge_assets.lib.jsonl import MAX_LINE_BYTES

    src = tmp_path / "in.jsonl"
    huge = json.dumps({"id": "huge", "series": [1.5] * (MAX_LINE_BYTES // 5 + 10)})
    assert len(huge) > MAX_LINE_BYTES
    src.write_text(huge + "\n" + json.dumps({"id": "ok", "series": [1.0, 2.0, 3.0]}) + "\n")
    out = atge("changepoints", "--batch", str(src), check=False)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    rows = _rows(out.stdout)
    assert rows[0]["id"] is None and rows[0]["changepoints"] == []
    assert rows[0]["error"] == (f"line 1: line is {len(huge) + 1:,} bytes, over the "
                                f"{MAX_LINE_BYTES:,}-byte limit; split it")
    assert rows[1] == {"id": "ok", "changepoints": []}


def test_changepoints_refuses_a_series_over_the_cap_at_once(tmp_path):
    from atge_assets.trends.changepoints import MAX_BATCH_POINTS

    src = tmp_path / "in.jsonl"
    step = [100.0 + (i % 3) for i in range(15)] + [140.0 + (i % 3) for i in range(15)]
    src.write_text(json.dumps({"id": "long", "series": [1.0] * (MAX_BATCH_POINTS + 1)}) + "\n"
                   + json.dumps({"id": "step", "series": step}) + "\n")
    started = time.monotonic()
    out = atge("changepoints", "--batch", str(src), check=False)
    assert time.monotonic() - started < 30  # the uncapped search took minutes
    assert out.returncode == 1
    rows = _rows(out.stdout)
    assert rows[0] == {"id": "long", "line": 1, "changepoints": [], "error": (
        f'line 1: ValueError: "series" has {MAX_BATCH_POINTS + 1:,} points, over the limit of '
        f'{MAX_BATCH_POINTS:,}; downsample or split it')}
    assert rows[1] == {"id": "step", "changepoints": [15]}


def test_forecast_refuses_unsorted_or_repeated_timestamps_naming_line_and_index(tmp_path):
    from atge_assets.monitoring.cli import MAX_BATCH_POINTS

    t0 = 1_700_000_000
    ts = [t0 + 60 * i for i in range(60)]
    values = [100.0 + 0.1 * i for i in range(60)]
    repeated = ts[:10] + [ts[9]] + ts[11:]
    swapped = ts[:20] + [ts[21], ts[20]] + ts[22:]
    lines = [{"id": "good", "threshold": 500, "timestamps": ts, "values": values},
             {"id": "repeated", "threshold": 500, "timestamps": repeated, "values": values},
             {"id": "swapped", "threshold": 500, "timestamps": swapped, "values": values},
             {"id": "long", "threshold": 500, "timestamps": list(range(MAX_BATCH_POINTS + 1)),
              "values": [1.0] * (MAX_BATCH_POINTS + 1)},
             {"id": "good2", "threshold": 500, "timestamps": ts, "values": values}]
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    out = atge("forecast", "--batch", str(src), check=False)
    assert out.returncode == 1 and "3 malformed" in out.stderr
    rows = _rows(out.stdout)
    assert [r["id"] for r in rows] == ["good", "repeated", "swapped", "long", "good2"]
    assert rows[0]["error"] is None and rows[0]["status"] == "ok" and rows[4]["error"] is None
    assert rows[1]["line"] == 2 and rows[1]["error"] == (
        f"line 2: ValueError: timestamps must be strictly increasing: timestamps[10] = "
        f"{ts[9]} repeats timestamps[9] = {ts[9]}")
    assert rows[2]["error"] == (
        f"line 3: ValueError: timestamps must be strictly increasing: timestamps[21] = "
        f"{ts[20]} is before timestamps[20] = {ts[21]}")
    assert rows[3]["error"] == (f"line 4: ValueError: timestamps has {MAX_BATCH_POINTS + 1:,} "
                                f"points, over the limit of {MAX_BATCH_POINTS:,}; downsample or "
                                f"split it")
    assert rows[1]["status"] is None and rows[1]["breach_expected"] is False


def test_line_cap_boundaries():
    import io

    from atge_assets.lib.jsonl import Overlong, read_lines, run_jsonl

    cap = 16
    ok = b'{"id": "%s"}' % (b"x" * (cap - 10))  # exactly the cap
    assert len(ok) == cap
    stream = io.BytesIO(ok + b"\r\n" + ok + b"y\n" + b"z" * 100 + b"\n" + ok)
    lines = list(read_lines(stream, cap))
    assert lines[0] == ok + b"\r\n" and lines[3] == ok
    assert lines[1] == ok + b"y\n"  # one byte over: read whole, refused by run_jsonl
    assert isinstance(lines[2], Overlong)  # far over: never held in memory
    out = io.StringIO()
    assert run_jsonl(lines, out, lambda row: {}, {}, max_line_bytes=cap) == 2
    rows = _rows(out.getvalue())
    assert [r.get("line") for r in rows] == [None, 2, 3, None]
    assert "over the 16-byte limit" in rows[1]["error"]
    # text lines are held to the same cap, in bytes
    out = io.StringIO()
    assert run_jsonl(['{"id": "\u00e9\u00e9\u00e9\u00e9"}'], out, lambda row: {}, {},
                     max_line_bytes=16) == 1
