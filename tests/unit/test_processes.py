"""lab.processes with real processes: a stop must not wait on a zombie it cannot reap."""
from __future__ import annotations

import os
import subprocess
import sys
import time

from lab import processes

# A parent that starts a child in its own session, prints the child's pid, and never reaps it:
# what a service started by `./run_all.sh up` is to a notebook kernel that restarts it.
PARENT = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "pass"], start_new_session=True)
print(child.pid, flush=True)
time.sleep(60)
"""


def _status(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def test_a_group_left_with_only_an_unreaped_zombie_is_not_alive():
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    try:
        child = int(parent.stdout.readline())
        for _ in range(200):
            if _status(child) == "Z":
                break
            time.sleep(0.05)
        assert _status(child) == "Z", "the child should be a zombie its parent has not reaped"
        os.killpg(child, 0)   # the kernel still counts the zombie as a member of its group
        assert not processes._group_alive(child)
    finally:
        parent.kill()
        parent.wait()


def test_a_group_with_a_live_process_is_alive(tmp_path):
    pid = processes.start([sys.executable, "-c", "import time; time.sleep(60)"],
                          pid_file=tmp_path / "p.pid", log_file=tmp_path / "p.log")
    try:
        assert processes._group_alive(pid)
    finally:
        assert processes.stop(tmp_path / "p.pid")
    assert not processes._group_alive(pid)
