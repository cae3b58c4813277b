"""./run_all.sh bench --quick --scale on the session's real stack: every figure is produced and sane.

A smoke test of the command, never of speed: it asserts that each figure exists, is
positive and has its ratio, that the report records the machine, that the bench leaves
the stack as it found it, and that the scale section's histories are kept for the next run.
"""
from __future__ import annotations

import json

import pytest
import requests
from kafka import KafkaAdminClient

from lab import bench, paths, processes
from lab.bench.harness import Lab, Plan
from lab.bench.scale import history_stack, write_history
from lab.broker import kafka_version
from tests.integration.kafka_reads import group_ids, wait_for


def positive(summary: dict) -> bool:
    return summary["n"] >= 1 and summary["median"] is not None and summary["median"] > 0


@pytest.fixture(scope="module")
def report(stack, tmp_path_factory):
    """One quick bench run into a temp folder; reports/ must stay untouched."""
    official = paths.REPORTS_DIR / "bench.json"
    before = official.stat().st_mtime_ns if official.exists() else None
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    assert bench.main(["--quick", "--scale", "--out", str(out)], stack) == 0
    after = official.stat().st_mtime_ns if official.exists() else None
    assert after == before, "the quick bench wrote into reports/"
    return json.loads(out.read_text())


def test_records_the_machine(report):
    m = report["machine"]
    assert m["cores"] >= 1 and m["python"] and m["kafka_python"]
    assert m["kafka"] == kafka_version()
    assert report["command"].startswith("./run_all.sh bench") and report["date"]
    assert report["plan"]["quick"] is True


def test_bulk_figures_and_ratios(report):
    bulk = report["results"]["bulk"]
    assert set(bulk["by_n"]) == {str(n) for n in report["plan"]["bulk_sizes"]}
    for row in bulk["by_n"].values():
        assert positive(row["service_events_per_s"]) and positive(row["raw_events_per_s"])
        assert row["ratio"] > 0
        assert all(run["acked"] == row["n"] for run in row["service_runs"] + row["raw_runs"])
    for who in ("service", "raw"):
        assert bulk["linearity"][who]["marginal_ratio"] is not None
        assert all(v > 0 for v in bulk["linearity"][who]["per_event_us"].values())
    assert all(mb > 0 for mb in bulk["peak_rss_mb"].values())
    assert set(bulk["peak_rss_mb"]) == {"kafka", "producer-order", "inventory-consumer", "analytics-consumer"}
    assert bulk["broker_heap"]


def test_replay_and_inventory_ratios(report):
    replay, inv = report["results"]["replay"], report["results"]["inventory"]
    assert replay["events"] > 0 and replay["ratio"] > 0 and positive(replay["raw_events_per_s"])
    assert inv["ratio"] > 0 and inv["ratio_vs_raw_eos"] > 0
    assert all(run["events"] == inv["n"] for run in inv["service_runs"] + inv["raw_runs"] + inv["raw_eos_runs"])


def test_end_to_end_and_single_orders(report):
    e2e = report["results"]["e2e"]
    assert positive(e2e["produce_s"]) and positive(e2e["e2e_s"]) and positive(e2e["e2e_over_produce"])
    assert 0 <= e2e["latency_p50_ms"]["median"] <= e2e["latency_p99_ms"]["median"]
    assert e2e["reps"][0]["latency_samples"] == e2e["n"]
    for c in report["plan"]["order_concurrency"]:
        row = report["results"]["orders"][str(c)]
        for who in ("service", "raw"):
            assert positive(row[who]["requests_per_s"]) and row[who]["errors"] == 0
            assert row[who]["p50_ms"]["median"] <= row[who]["p99_ms"]["median"]


def test_reference_ceiling_and_targets(report):
    perf = report["results"]["perf"]
    assert positive(perf["events_per_s"]) and perf["record_size"] > 0
    targets = report["targets"]
    assert len(targets) == len(report["plan"]["bulk_sizes"]) + 1 + 3 + 4 + 3
    assert all(t["measured"] is not None and t["met"] in (True, False) for t in targets)


def test_confluent_kafka_rows(report):
    clients = report["results"]["clients"]
    assert clients["n"] == report["plan"]["clients_n"] and clients["librdkafka"]
    for key in ("produce", "read_decode"):
        row = clients[key]
        assert all(positive(row[f"{who}_events_per_s"]) for who in ("service", "kafka-python", "confluent-kafka"))
        assert row["service_over_confluent"] > 0 and row["kafka_python_over_confluent"] > 0
    assert all(run["acked"] == clients["n"] for runs in clients["produce"]["runs"].values() for run in runs)
    reads = clients["read_decode"]["runs"]
    raw = {run["events"] for who in ("kafka-python", "confluent-kafka") for run in reads[who]}
    assert len(raw) == 1 and raw.pop() > 0, "both raw readers read the same records"
    assert "| produce " in bench.table(report) and "raw confluent-kafka" in bench.table(report)


def test_table_names_every_target(report):
    table = bench.table(report)
    assert all(t["target"] in table for t in report["targets"])


def test_leaves_the_stack_as_it_found_it(report, stack):
    assert bench.RAW_GROUP not in group_ids(stack.bootstrap)
    status = stack.status()
    assert all(status[s]["running"] for s in ("producer-order", "inventory-consumer", "analytics-consumer"))
    wait_for(lambda: requests.get(stack.analytics_url + "/metrics", timeout=30).json()["consumer"]["phase"] == "live",
             60, what="analytics to be live again")
    admin = KafkaAdminClient(bootstrap_servers=stack.bootstrap, client_id="test-bench")
    try:
        assert not set(bench.SCRATCH_TOPICS) & set(admin.list_topics())
    finally:
        admin.close()


def test_scale_figures_and_targets(report, stack):
    sc = report["results"]["scale"]
    small, mid, large = report["plan"]["scale_events"]
    assert sc["events"] == {"small": small, "mid": mid, "large": large}
    assert sc["root"] == str(stack.home / "bench-scale")
    for key in ("analytics_restart_s", "inventory_restart_s"):
        assert set(sc[key]) == {str(small), str(large)} and all(positive(s) for s in sc[key].values())
    assert set(sc["replay_events_per_s"]) == {str(mid), str(large)}
    assert all(positive(s) for s in sc["replay_events_per_s"].values())
    assert sc["analytics_restart_ratio"] > 0 and sc["inventory_restart_ratio"] > 0 and sc["replay_ratio"] > 0
    assert sc["analytics_peak_rss_mb"] > 0 and sc["verify"]["peak_rss_mb"] > 0 and sc["verify"]["ok"] is True
    for n, h in sc["history"].items():
        # Replay reads what the history holds: its orders and an inventory event for each.
        assert h["orders"] == int(n) // 2 and h["offsets"] >= int(n)
    assert [t["target"].split()[0] for t in report["targets"] if "events /" in t["target"]] == \
        ["analytics", "inventory", "replay"]


def test_the_scale_stacks_are_stopped_and_keep_their_history(report, stack):
    """The histories outlive the run, stopped; the next run finds the smallest on its broker and writes nothing."""
    root = stack.home / "bench-scale"
    homes = sorted(root.iterdir())
    assert [h.name for h in homes] == sorted({f"{n}-events" for n in report["plan"]["scale_events"]})
    assert not [f for home in homes for f in (home / "run").glob("*.pid") if processes.running_pid(f)]
    small = report["plan"]["scale_events"][0]
    before = report["results"]["scale"]["history"][str(small)]
    assert before["written_orders"] == before["orders"] == small // 2
    again = history_stack(stack, root, small, print)
    lab = None
    try:
        again.cluster.start(progress=print)  # its broker alone: a history that is there needs no service
        lab = Lab(again, Plan.quick_plan(), print)
        reused = write_history(lab, small)
        assert reused["written_orders"] == 0 and reused["orders"] == before["orders"]
        # The history's records, and the one order each inventory restart wrote.
        assert reused["offsets"] >= before["offsets"] + report["plan"]["scale_reps"]
    finally:
        if lab is not None:
            lab.close()
        again.down()
