"""The seed's test command, `python tests/test_kafka.py`, as a user runs it: against the suite's own stack.

Small sizes through its own options; the stack's LAB_HOME and ports in the environment, so the
script's `./run_all.sh restart inventory-consumer THROTTLE_MS=...` restarts this very stack. The
lab's other packages are refused at import, as on a machine with only the seed's
`pip install requests kafka-python`.
"""
from __future__ import annotations

import os
import subprocess
import sys

import psutil
import pytest

from lab import paths
from lab.stack import INVENTORY
from tests.conftest import free_port

SCRIPT = "tests/test_kafka.py"
REPO_REPORT = paths.ROOT / "tests" / "kafka_metrics_report.txt"
RUN_TIMEOUT_S = 600  # a guard against a hang, not a performance expectation
# What requirements.txt installs beyond the seed's two packages.
NOT_FROM_THE_SEED = ("pandas", "numpy", "matplotlib", "flask", "werkzeug", "jsonschema", "yaml", "psutil",
                     "gunicorn", "gevent", "prometheus_client", "papermill", "nbformat", "nbconvert", "IPython")
# `python tests/test_kafka.py`, with the packages above refused: sys.path[0] is tests/, as for the seed's command.
RUNNER = """
import importlib.abc, os, runpy, sys
refused = set(sys.argv[1].split(","))
class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in refused:
            raise ModuleNotFoundError(f"No module named {name!r} (the seed installs only requests and kafka-python)")
        return None
sys.meta_path.insert(0, NotInstalled())
sys.argv = sys.argv[2:]
sys.path[0] = os.path.dirname(os.path.abspath(sys.argv[0]))
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def seed_env(stack) -> dict:
    """The caller's environment plus what run_all.sh needs to find this stack (an empty value removes a variable)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    for k, v in {**stack.child_environment(), **{k: str(v) for k, v in stack.env.items()}}.items():
        if v:
            env[k] = v
        else:
            env.pop(k, None)
    return env


def run_seed_command(env: dict, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", RUNNER, ",".join(NOT_FROM_THE_SEED), SCRIPT, *args],
                          cwd=paths.ROOT, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)


def section(text: str, title: str) -> list[str]:
    """The table lines under a heading line starting with title, up to the next blank line."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith(title))
    out = []
    for line in lines[start + 1:]:
        if not line.strip():
            break
        out.append(line.split())
    return out


@pytest.fixture(scope="module")
def seed_run(stack, tmp_path_factory):
    report = tmp_path_factory.mktemp("seed") / "kafka_metrics_report.txt"
    repo_report_before = REPO_REPORT.stat().st_mtime if REPO_REPORT.exists() else None
    proc = run_seed_command(seed_env(stack), "--events", "200", "--batches", "4", "--burst", "60",
                            "--throttle-ms", "100", "--observe-s", "3", "--sample-interval-s", "0.5",
                            "--producer", stack.producer_url, "--analytics", stack.analytics_url,
                            "--bootstrap", stack.bootstrap, "--stack", "embedded", "--report", str(report))
    print(proc.stdout[-6000:], proc.stderr[-3000:])
    repo_report_after = REPO_REPORT.stat().st_mtime if REPO_REPORT.exists() else None
    return {"proc": proc, "report": report, "repo_report_untouched": repo_report_before == repo_report_after}


def test_the_seed_command_passes_its_three_steps(seed_run):
    proc = seed_run["proc"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    for step in ("1. LOAD: 200 events in 4 bulk posts", "2. CONSUMER LAG: inventory-consumer at THROTTLE_MS=100",
                 "3. REPLAY: POST /replay"):
        assert step in proc.stdout
    assert proc.stdout.rstrip().endswith("RESULT: all checks passed")
    assert "FAILED" not in proc.stdout


def test_it_prints_lag_readings_that_rise_while_throttled_and_end_at_0(seed_run):
    rows = section(seed_run["proc"].stdout, "Lag readings")
    header, readings = rows[0], rows[2:]
    assert header == ["t_s", "consumer", "lag", "p0", "lag", "p1", "lag", "p2", "total", "oldest_s", "status"]
    total = {"throttled": [], "unthrottled": []}
    for r in readings:
        total[r[1]].append(int(r[5].replace(",", "")))
    assert max(total["throttled"]) > 0        # the 60-event burst waits for a consumer at 10 events/s
    assert total["unthrottled"] and total["unthrottled"][-1] == 0


def test_it_prints_the_replay_before_after_table(seed_run):
    rows = section(seed_run["proc"].stdout, "Before/after table")
    assert rows[0] == ["metric", "before", "after", "delta"]
    by_metric = {r[0]: r[1:] for r in rows[2:]}
    for metric in ("orders_total", "inventory_events_total", "qty_total", "reserved", "rejected"):
        before, after, delta = by_metric[metric]
        assert before == after and delta == "0"
    assert int(by_metric["orders_total"][0].replace(",", "")) >= 260   # this run's 200 + 60, at least


def test_the_report_file_holds_the_readings_and_the_table(seed_run):
    report = seed_run["report"]
    text = report.read_text()
    assert section(text, "Lag readings") == section(seed_run["proc"].stdout, "Lag readings")
    assert section(text, "Before/after table") == section(seed_run["proc"].stdout, "Before/after table")
    assert "sizes: --events 200 --batches 4 --burst 60 --throttle-ms 100" in text
    assert text.rstrip().endswith("RESULT: all checks passed")
    assert f"report: {report}" in seed_run["proc"].stdout
    assert seed_run["repo_report_untouched"]  # --report put it elsewhere


def test_inventory_consumer_is_left_unthrottled(seed_run, stack):
    inv = stack.status()[INVENTORY]
    assert inv["running"] and inv["instances"] == 1
    assert "THROTTLE_MS" not in inv["overrides"]
    # The restarts kept the stack's own settings: run_all.sh got them from the environment.
    assert all(psutil.Process(pid).environ().get("INITIAL_STOCK") == "1000000" for pid in inv["pids"])


def test_without_a_stack_it_says_where_it_looked(tmp_path):
    dead = f"http://127.0.0.1:{free_port()}"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = run_seed_command(env, "--producer", dead, "--analytics", dead, "--bootstrap", f"127.0.0.1:{free_port()}",
                            "--stack", "embedded", "--report", str(tmp_path / "report.txt"))
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: nothing answers at {dead}/metrics: start the stack (./run_all.sh up) " \
                                  f"or point --producer/--analytics at it"
