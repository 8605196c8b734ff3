"""Stopping the processes the harness starts: a hung one is killed, with its children."""

import signal
import subprocess
import sys
from pathlib import Path

import dagster as dg

from atge_assets.harness.stack import stop_process, wait_until

# A parent that ignores SIGTERM, leads its own session (as `atge up` does) and has a child that
# ignores it too: what a hung `atge up` with its webserver looks like.
HUNG = """
import signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen([sys.executable, "-c",
                          "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                          "time.sleep(120)"])
open(sys.argv[1], "w").write(str(child.pid))
time.sleep(120)
"""


def _gone(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status")
    try:
        return "\nState:\tZ" in status.read_text()  # killed, not yet reaped
    except FileNotFoundError:
        return True


def test_a_hung_group_leader_is_killed_with_its_children(tmp_path):
    pid_file = tmp_path / "child.pid"
    proc = subprocess.Popen([sys.executable, "-c", HUNG, str(pid_file)], start_new_session=True)
    wait_until(lambda: pid_file.exists() and pid_file.read_text(), 30, what="the child")
    child = int(pid_file.read_text())
    assert stop_process(proc, signal.SIGTERM, 1, group=False) == -signal.SIGKILL
    wait_until(lambda: _gone(child), 10, what="the child to be killed with its parent")


def test_a_process_that_leads_no_group_is_killed_alone(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "import signal, time; "
                             "signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', "
                             "flush=True); time.sleep(120)"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"  # SIGTERM is ignored from here on
    assert stop_process(proc, signal.SIGTERM, 1, group=False) == -signal.SIGKILL
    proc.stdout.close()


@dg.asset
def _anything():
    return 1


def test_a_process_started_after_an_in_process_dagster_run_still_stops_on_sigterm():
    # Dagster maps SIGTERM to SIGINT's handler in this process; under a shell's `&` SIGINT is
    # ignored, and without conftest's pytest_configure SIGTERM would be ignored here and in
    # children from now on.
    assert dg.materialize([_anything]).success
    assert signal.getsignal(signal.SIGTERM) is not signal.SIG_IGN
    proc = subprocess.Popen([sys.executable, "-c", "import time; print('ready', flush=True); "
                             "time.sleep(120)"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    assert stop_process(proc, signal.SIGTERM, 10, group=False) == -signal.SIGTERM
    proc.stdout.close()
