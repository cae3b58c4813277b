"""The whole lab, as a user runs it: ./run_all.sh's pipeline with small parameters against the test's own stack.

One pipeline run (module fixture) feeds every assertion; they read what the notebooks
recorded (reports/results/*.json), the chart and the reports, never printed output.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import matplotlib.image
import pytest

from lab import paths, report, results
from lab.stack import ANALYTICS, INVENTORY
from tests.conftest import make_stack, running

QUICK = paths.PARAMS_DIR / "quick.yaml"
RUN_TIMEOUT_S = 900  # a guard against a hang, not a performance expectation


def lab_env(stack, reports_dir) -> dict:
    """The environment a user sets to point ./run_all.sh at a stack of their own."""
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP"}
    env.update({"LAB_HOME": str(stack.home), "KAFKA_PORT": str(stack.kafka_port),
                "KAFKA_CONTROLLER_PORT": str(stack.controller_port), "PRODUCER_PORT": str(stack.producer_port),
                "ANALYTICS_PORT": str(stack.analytics_port), "LAB_REPORTS_DIR": str(reports_dir),
                "PYTHONPATH": str(paths.ROOT), **{k: str(v) for k, v in stack.env.items()}})
    return env


def run_lab(stack, reports_dir, *args) -> subprocess.CompletedProcess:
    # --keep: the session fixture owns the stack and stops it.
    return subprocess.run([sys.executable, "-m", "lab.cli", "--keep", *args], cwd=paths.ROOT,
                          env=lab_env(stack, reports_dir), capture_output=True, text=True, timeout=RUN_TIMEOUT_S)


def repo_reports_state() -> dict:
    return {p: p.stat().st_mtime for p in (paths.ROOT / "reports").rglob("*")}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """A stack of this module's own: notebook 04's at-least-once run leaves duplicates in InventoryEvents for
    good, and the session stack's other tests check that topic whole (lab.verify)."""
    with running(make_stack(tmp_path_factory.mktemp("lab-notebooks"), INITIAL_STOCK=1_000_000)) as s:
        yield s


@pytest.fixture(scope="module")
def lab_run(stack, tmp_path_factory):
    reports_dir = tmp_path_factory.mktemp("reports")
    before = repo_reports_state()
    proc = run_lab(stack, reports_dir, "--params", str(QUICK), "-p", "n_events=400")
    print(proc.stdout[-6000:], proc.stderr[-3000:])
    return {"proc": proc, "dir": reports_dir, "repo_reports_untouched": repo_reports_state() == before,
            **{name: results.load(name, reports_dir / "results") for name in (*results.NAMES, results.RUN)}}


def test_the_run_succeeds_and_writes_everything(lab_run):
    assert lab_run["proc"].returncode == 0, lab_run["proc"].stderr[-3000:]
    d = lab_run["dir"]
    for name in ("01-load-10k", "02-consumer-lag", "03-replay", "04-delivery-semantics", "99-report"):
        assert (d / "notebooks" / f"{name}.ipynb").exists()
    for f in ("kafka_metrics_report.txt", "report.html", "figures/lag_chart.png", "figures/load_chart.png",
              "figures/semantics_chart.png"):
        assert (d / f).exists(), f
    assert lab_run["repo_reports_untouched"]


def test_parameters_came_from_the_file_and_the_command_line(lab_run):
    assert lab_run[results.LOAD]["parameters"] == {"n_events": 400, "batches": 4, "item": "mixed"}
    assert lab_run[results.LAG]["parameters"]["burst"] == 150
    assert lab_run[results.LAG]["parameters"]["throttle_ms"] == 20
    assert lab_run[results.REPLAY]["parameters"] == {"post_reset_orders": 100}
    assert lab_run[results.SEMANTICS]["parameters"] == {"burst": 150, "kills": 1, "kill_interval_s": 0.5,
                                                         "throttle_ms": 20, "modes": "at_least_once,exactly_once"}
    # Given as an absolute path, recorded relative to the repository (results.portable).
    assert lab_run[results.RUN]["param_files"][-1] == "params/quick.yaml"
    assert "--params params/quick.yaml" in lab_run[results.RUN]["command"]
    assert lab_run[results.RUN]["overrides"] == {"n_events": 400}


def test_the_notebooks_talked_to_this_stack(lab_run, stack):
    assert lab_run[results.LOAD]["versions"]["broker"].endswith(stack.bootstrap)


def test_the_load_reconciles(lab_run):
    load = lab_run[results.LOAD]
    assert load["totals"]["produced"] == 400
    assert load["analytics_counted"]
    assert load["reconciliation"]["reconciled"], load["reconciliation"]["mismatches"]
    assert set(load["reconciliation"]["counts"].values()) == {400}
    assert load["inventory_read_back"]["duplicates"] == 0
    assert sum(sum(b["by_partition"].values()) for b in load["batches"]) == 400


def test_lag_rose_in_phase_1_and_reached_0_in_phase_3(lab_run):
    lag = lab_run[results.LAG]
    phase = {p: [s for s in lag["samples"] if s["phase"] == p] for p in (1, 2, 3)}
    assert all(phase.values())
    assert max(s["total_lag"] for s in phase[1]) > phase[1][0]["total_lag"]
    assert max(s["total_lag"] for s in phase[1]) >= 100    # most of the 150-event burst waits
    assert lag["caught_up"] and phase[3][-1]["total_lag"] == 0
    assert lag["final_status"]["status"] == "OK"
    # Offsets and seconds at every sample, per partition.
    for s in lag["samples"]:
        assert {p["partition"] for p in s["partitions"]} == {0, 1, 2}
        assert all(p["lag_seconds"] is not None for p in s["partitions"])
    assert max(s["max_lag_seconds"] for s in phase[1]) > 0


def test_the_lag_chart_is_a_real_picture(lab_run):
    png = lab_run["dir"] / "figures" / "lag_chart.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 30_000
    pixels = matplotlib.image.imread(png)
    assert pixels.shape[0] >= 600 and pixels.shape[1] >= 1000
    assert pixels.std() > 0.05


def test_replay_after_equals_the_true_counts(lab_run):
    rep = lab_run[results.REPLAY]
    replay, demo = rep["replay"], rep["replay_matters"]
    assert replay["after_matches_truth"] and replay["diff"] == {}
    assert {k: replay["after"][k] for k in replay["truth"]} == replay["truth"]
    # Without its rebuild analytics counted only the orders that arrived after the reset...
    assert demo["after_reset"]["orders_total"] == 0
    assert demo["drifted"]["orders_total"] == demo["drifted"]["inventory_events_total"] == 100
    assert demo["truth"]["orders_total"] > 100
    # ...and replay, then a normal restart, brought back the truth.
    assert {k: demo["replay"]["after"][k] for k in demo["truth"]} == demo["truth"]
    assert demo["restored"] == demo["truth"]


def test_a_kill_never_doubles_exactly_once_output_and_at_least_once_uses_no_transaction(lab_run):
    modes = {m["mode"]: m for m in lab_run[results.SEMANTICS]["modes"]}
    assert list(modes) == ["at_least_once", "exactly_once"]
    for m in modes.values():
        k = m["kill_run"]
        assert m["kills_done"] == 1 and len(k["kill_times_s"]) == 1      # the kill landed mid-stream
        assert k["missing"] == 0 and k["read_committed"]["orders"] == 150
        assert m["throughput"]["orders_out"] == 150 and m["throughput"]["duplicates"] == 0
        assert m["throughput"]["events_per_s"] > 0
    eo, alo = modes["exactly_once"]["kill_run"], modes["at_least_once"]["kill_run"]
    assert eo["read_committed"]["duplicates"] == 0 and eo["stock"]["drift"] == 0
    assert eo["markers"] > 0                                 # transactions: a commit marker per partition each
    # No transaction: no marker in its offsets, nothing aborted, both isolation levels read the same records.
    assert alo["markers"] == 0 and alo["aborted_records"] == 0
    assert alo["read_committed"] == alo["read_uncommitted"]
    # A redelivered order is reserved again: one unit of drift per duplicate (one unit per order, stock to spare).
    assert alo["stock"]["drift"] == alo["read_committed"]["duplicates"]


def test_the_semantics_chart_is_a_real_picture(lab_run):
    png = lab_run["dir"] / "figures" / "semantics_chart.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = matplotlib.image.imread(png)
    assert pixels.shape[0] >= 800 and pixels.shape[1] >= 1000 and pixels.std() > 0.05


def test_the_report_has_every_section(lab_run):
    text = (lab_run["dir"] / "kafka_metrics_report.txt").read_text()
    for section in report.SECTIONS:
        assert f"\n{section}\n" in text
    assert "RESULT: all counts agree." in text
    assert "Lag readings" in text and "lag reached 0 at t=" in text
    assert "Replay after equals the counts read straight from the topics." in text
    assert "exactly_once: 1 kill, no duplicate in read_committed, no stock drift" in text
    assert "Apache Kafka 4.3.1" in text and "client: kafka-python" in text
    html = (lab_run["dir"] / "report.html").read_text()
    assert html.count('" src="data:image/png;base64,') >= 4     # load, lag, replay and semantics charts embedded
    assert "experiments.run_load" not in html                    # inputs hidden
    assert "kafka_metrics_report.txt" in html


def test_the_services_are_left_as_they_were(lab_run, stack):
    status = stack.status()
    assert status[INVENTORY]["instances"] == 1 and "THROTTLE_MS" not in status[INVENTORY]["overrides"]
    assert "PROCESSING_GUARANTEE" not in status[INVENTORY]["overrides"]     # exactly-once, the default
    assert status[ANALYTICS]["running"] and "ANALYTICS_REBUILD" not in status[ANALYTICS]["overrides"]


def test_a_failing_notebook_fails_the_run(lab_run, stack, tmp_path):
    # The producer refuses a blank item name: notebook 01 fails on its first request.
    proc = run_lab(stack, tmp_path, "--params", str(QUICK), "-p", "item=' '")
    assert proc.returncode == 1
    assert "01-load-10k FAILED" in proc.stderr
    assert (tmp_path / "notebooks" / "01-load-10k.ipynb").exists()
    assert not (tmp_path / "notebooks" / "02-consumer-lag.ipynb").exists()
    assert not (tmp_path / "kafka_metrics_report.txt").exists()
    run = json.loads((tmp_path / "results" / "run.json").read_text())
    assert run["overrides"] == {"item": " "}


def test_unknown_parameters_are_refused_before_anything_runs(stack, tmp_path):
    proc = run_lab(stack, tmp_path, "-p", "n_event=5")
    assert proc.returncode == 2
    assert "unknown parameter 'n_event'" in proc.stderr
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("report_file", ["report.html", "kafka_metrics_report.txt",
                                         *(f"results/{n}.json" for n in (*results.NAMES, results.RUN))])
def test_the_reports_show_no_path_of_the_machine_they_ran_on(lab_run, report_file):
    text = (lab_run["dir"] / report_file).read_text()
    # Notebook 01's last cell once displayed the path its results went to (PosixPath('/.../01-load-10k.json')),
    # and the run recorded --params as typed: here the absolute path of params/quick.yaml.
    assert "PosixPath(" not in text
    assert str(lab_run["dir"]) not in text
    assert str(paths.ROOT) not in text
