"""Background processes owned by the lab: start detached, record a pid file, stop them all."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import psutil


def start(cmd: list[str], *, pid_file: Path, log_file: Path, env: dict[str, str] | None = None,
          cwd: Path | None = None) -> int:
    """Start cmd in its own session (so a stop takes its children too); return the pid."""
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=env, cwd=cwd, start_new_session=True,
        )
    # The create time tells our process from an unrelated one that reused the pid.
    created = psutil.Process(proc.pid).create_time()
    pid_file.write_text(json.dumps({"pid": proc.pid, "created": created, "cmd": cmd}))
    return proc.pid


def running_pid(pid_file: Path) -> int | None:
    """The pid recorded in pid_file if that very process is still alive, else None."""
    try:
        rec = json.loads(pid_file.read_text())
        p = psutil.Process(rec["pid"])
        if abs(p.create_time() - rec["created"]) > 0.01 or p.status() == psutil.STATUS_ZOMBIE:
            return None
        return rec["pid"]
    except (FileNotFoundError, ValueError, KeyError, psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def stop(pid_file: Path, *, timeout: float = 30.0, sig: int = signal.SIGTERM) -> bool:
    """Stop the process group behind pid_file (SIGTERM, then SIGKILL); True if one was running."""
    pid = running_pid(pid_file)
    if pid is None:
        pid_file.unlink(missing_ok=True)
        return False
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and running_pid(pid_file) is not None:
        _reap(pid)
        time.sleep(0.1)
    if running_pid(pid_file) is not None:
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        while running_pid(pid_file) is not None:
            _reap(pid)
            time.sleep(0.05)
    _reap(pid, block=True)  # it is dead by now: this returns at once
    # The leader gone is not the group gone: a gunicorn worker outlived its master by seconds and
    # kept answering on the port, so a restart's health check asked the old process, not the new.
    while time.monotonic() < deadline and _group_alive(pid):
        time.sleep(0.05)
    if _group_alive(pid):
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        for _ in range(100):
            if not _group_alive(pid):
                break
            time.sleep(0.02)
    pid_file.unlink(missing_ok=True)
    return True


def _group_alive(pgid: int) -> bool:
    """Whether a live (not zombie) process is left in the group. os.killpg(pgid, 0) counts a
    zombie too: a service started by another process (./run_all.sh up, then a notebook kernel's
    restart) stays a zombie of that process, so each such restart waited out the whole timeout."""
    for proc in psutil.process_iter(["status"]):
        try:
            if proc.info["status"] != psutil.STATUS_ZOMBIE and os.getpgid(proc.pid) == pgid:
                return True
        except (ProcessLookupError, psutil.Error):
            continue
    return False


def kill(pid_file: Path) -> bool:
    """kill -9 the process group: the crash the reliability tests inflict."""
    pid = running_pid(pid_file)
    if pid is None:
        return False
    os.killpg(pid, signal.SIGKILL)
    while running_pid(pid_file) is not None:
        _reap(pid)
        time.sleep(0.05)
    _reap(pid, block=True)
    return True


def _reap(pid: int, block: bool = False) -> None:
    # A child of this very process (a stack started from Python) stays a zombie until waited
    # for; a process started by an earlier ./run_all.sh is not our child and needs nothing.
    try:
        os.waitpid(pid, 0 if block else os.WNOHANG)
    except ChildProcessError:
        pass


def tail(path: Path, lines: int = 40) -> str:
    """The last lines of a log file, for error messages."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return f"(no log at {path})"
