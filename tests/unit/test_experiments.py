"""The pure parts of lab.experiments: batch sizes, reconciliation, drain rates, phase summaries, tables."""
from __future__ import annotations

import pandas as pd
import pytest

from lab import experiments
from services.common import events
from tests.unit.lab_fixtures import demo_result, lag_result, lag_samples, load_result, replay_result


@pytest.mark.parametrize("n, parts, sizes", [
    (10_000, 4, [2500, 2500, 2500, 2500]),
    (10, 3, [4, 3, 3]),
    (2, 4, [1, 1]),
    (1, 1, [1]),
])
def test_split(n, parts, sizes):
    assert experiments.split(n, parts) == sizes
    assert sum(sizes) == n


@pytest.mark.parametrize("n, parts", [(0, 4), (10, 0)])
def test_split_rejects_nothing_to_do(n, parts):
    with pytest.raises(ValueError):
        experiments.split(n, parts)


def test_expected_order_ids_are_the_producers_seeded_ids():
    # The producer calls events.bulk_orders(n, item, qty=1, seed=seed) per batch.
    ids = experiments.expected_order_ids([3, 2], events.MIXED, base_seed=41)
    produced = [ev["order_id"] for ev in events.bulk_orders(3, events.MIXED, seed=41)] + \
               [ev["order_id"] for ev in events.bulk_orders(2, events.MIXED, seed=42)]
    assert ids == set(produced) and len(ids) == 5


def test_reconcile_agrees():
    rec = experiments.reconcile(400, 400, 0, 400, 400)
    assert rec["reconciled"] and rec["mismatches"] == []


@pytest.mark.parametrize("args, named", [
    ((400, 399, 0, 400, 400), "InventoryEvents read back (distinct orders) = 399, expected 400"),
    ((400, 400, 0, 401, 400), "/metrics orders_total increase = 401, expected 400"),
    ((400, 400, 0, 400, 398), "/metrics inventory_events_total increase = 398, expected 400"),
    ((400, 400, 3, 400, 400), "3 duplicate InventoryEvents"),
])
def test_reconcile_names_every_mismatch(args, named):
    rec = experiments.reconcile(*args)
    assert not rec["reconciled"]
    assert any(named in m for m in rec["mismatches"])


def test_processed_between_counts_committed_progress_and_none_as_zero():
    a = {"partitions": [{"partition": 0, "committed": None}, {"partition": 1, "committed": 10}]}
    b = {"partitions": [{"partition": 0, "committed": 5}, {"partition": 1, "committed": 14}]}
    assert experiments.processed_between(a, b) == 9


def test_drain_rates_leave_out_the_pause_at_the_start_and_the_idle_end():
    samples, _ = lag_samples()
    phase2 = [s for s in samples if s["phase"] == 2]   # t=6..10, a 1 s pause, then 30 events/s
    rates = experiments.drain_rates(phase2)
    assert rates["processed"] == 120
    assert rates["events_per_s"] == 30.0              # 120 events over 4 s
    assert rates["active_events_per_s"] == 30.0
    assert experiments.drain_rates(phase2[:1])["events_per_s"] == 0.0


def test_drain_rates_of_a_phase_that_never_moves():
    samples, _ = lag_samples()
    idle = [s for s in samples if s["phase"] == 3][1:]   # caught up already
    assert experiments.drain_rates(idle)["active_events_per_s"] == 0.0


def test_summarize_phases_tells_the_three_phase_story():
    lag = lag_result()
    p1, p2, p3 = lag["phases"]
    assert p1["lag_start"] == 0 and p1["lag_max"] == 300
    assert p1["status"]["status"] == "STALL"           # partitions 0 and 1 starve behind partition 2
    assert p2["active_events_per_s"] == pytest.approx(3 * p1["active_events_per_s"])
    assert p3["lag_end"] == 0 and p3["status"]["status"] == "OK"
    assert all("status" in s for s in lag["samples"])


@pytest.mark.parametrize("instances, throttle_ms, partitions, rate", [
    (1, 100, 3, 10.0),       # the spec's consumer: 10 events/s
    (3, 100, 3, 30.0),       # one consumer per partition triples it
    (5, 100, 3, 30.0),       # consumers beyond the partitions idle
    (2, 20, 3, 100.0),
    (1, 0, 3, None),         # unthrottled: no model
])
def test_expected_drain_rate(instances, throttle_ms, partitions, rate):
    assert experiments.expected_drain_rate(instances, throttle_ms, partitions) == rate


@pytest.mark.parametrize("lag, rate, seconds", [(300, 10.0, 30.0), (0, 0.0, 0.0), (5, 0.0, None), (7, None, None)])
def test_drain_time(lag, rate, seconds):
    assert experiments.drain_time_s(lag, rate) == seconds


def test_drain_model_puts_the_measured_rate_beside_the_model():
    # 9.2 events/s from one consumer at 100 ms: 92% of the model, 8.7 ms per event beyond the sleep.
    phase = {"instances": 1, "throttle_ms": 100, "active_events_per_s": 9.2, "lag_end": 2760}
    assert experiments.drain_model(phase, partitions=3) == {
        "consumers_at_work": 1, "expected_events_per_s": 10.0, "measured_vs_expected": 0.92,
        "extra_ms_per_event": 8.7, "drained_in_s_at_this_rate": 300.0}
    scaled = experiments.drain_model({**phase, "instances": 4, "active_events_per_s": 27.0}, partitions=3)
    assert scaled["consumers_at_work"] == 3 and scaled["expected_events_per_s"] == 30.0
    assert scaled["measured_vs_expected"] == 0.9
    unthrottled = experiments.drain_model({**phase, "throttle_ms": 0, "active_events_per_s": 900.0}, partitions=3)
    assert unthrottled["expected_events_per_s"] is None and unthrottled["measured_vs_expected"] is None
    assert unthrottled["drained_in_s_at_this_rate"] == pytest.approx(3.1, abs=0.05)


def test_the_phase_and_readings_tables_show_the_model():
    lag = lag_result()
    phases = experiments.phase_table(lag)
    assert phases.loc[1, "model_events_per_s"] == 10.0 and phases.loc[1, "measured_vs_model"] == "100%"
    assert phases.loc[1, "lag_end_drained_in_s"] == 26.0       # 260 left at 10 events/s
    assert pd.isna(phases.loc[3, "measured_vs_model"])      # unthrottled: no model
    readings = experiments.readings_table(lag)
    first_lagging = readings[readings["total"] > 0].iloc[0]
    assert first_lagging["at phase rate, drained in s"] == 30.0   # 300 at phase 1's 10 events/s


def test_phase_label():
    assert experiments.phase_label(1, 100) == "1 consumer, 100 ms/event"
    assert experiments.phase_label(3, 0) == "3 consumers, unthrottled"


def test_tables_have_one_row_per_thing_recorded():
    load = load_result()
    assert list(experiments.load_table(load).index) == [1, 2, 3, 4, "total"]
    assert set(experiments.reconciliation_table(load)["matches"]) == {"yes"}
    lag = lag_result()
    assert list(experiments.phase_table(lag).index) == [1, 2, 3]
    readings = experiments.readings_table(lag)
    assert len(readings) == len(lag["samples"]) and {"lag p0", "total", "age p2 s", "status"} <= set(readings)
    table = experiments.replay_table(replay_result())
    assert table.loc["orders_total"].tolist() == [700, 700, 0]
    assert "latency_ms.p50" in table.index
    drift = experiments.drift_table(demo_result())
    assert drift.loc["orders_total"].tolist() == [0, 100, 800, 800, 800]


def test_replay_table_shows_a_delta_only_for_numbers():
    result = replay_result()
    result["after"] = {**result["after"], "orders_total": 705, "latency_ms": {"samples": 700, "p50": None, "max": 9}}
    table = experiments.replay_table(result)
    assert table.loc["orders_total", "delta"] == 5
    assert pd.isna(table.loc["latency_ms.p50", "delta"])


@pytest.mark.parametrize("papermill, shown_on", [(None, "out"), ("1", "err")])
def test_progress_is_ordinary_output_in_jupyterlab_and_stderr_under_papermill(monkeypatch, capsys, papermill,
                                                                              shown_on):
    import logging

    from lab.pipeline import PAPERMILL_ENV
    if papermill is None:
        monkeypatch.delenv(PAPERMILL_ENV, raising=False)
    else:
        monkeypatch.setenv(PAPERMILL_ENV, papermill)
    logger = logging.getLogger("lab")
    before, level = list(logger.handlers), logger.level
    try:
        experiments.show_progress()
        logging.getLogger("lab.experiments").info("load batch 1/4: 100 of 100 events acknowledged")
        captured = capsys.readouterr()
        line = getattr(captured, shown_on)
        assert "load batch 1/4" in line and experiments.PROGRESS_LINE.match(line)
        assert "load batch" not in getattr(captured, "err" if shown_on == "out" else "out")
    finally:
        logger.handlers[:] = before
        logger.setLevel(level)
