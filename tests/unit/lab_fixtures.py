"""Recorded results as the notebooks write them, built synthetically for the report, chart and table tests."""
from __future__ import annotations


def sample(t: float, phase: int, committed: list[int], ends: list[int], age: float) -> dict:
    parts = [{"partition": p, "end_offset": e, "committed": c, "lag": e - c, "lag_seconds": age if e > c else 0.0}
             for p, (c, e) in enumerate(zip(committed, ends, strict=True))]
    return {"t": t, "wall": 1_700_000_000 + t, "phase": phase, "partitions": parts,
            "total_lag": sum(x["lag"] for x in parts), "max_lag_seconds": max(x["lag_seconds"] for x in parts)}


def lag_samples() -> tuple[list[dict], list[dict]]:
    """A three-phase run: burst of 300, one slow consumer on p2, three at 10/s each, then caught up."""
    ends = [100, 100, 100]
    samples = [sample(0, 1, [0, 0, 0], [0, 0, 0], 0.0)]
    c = [0, 0, 0]
    for t in range(1, 6):                      # phase 1: only partition 2 moves, 10/s
        c = [0, 0, 10 * (t - 1)]
        samples.append(sample(t, 1, c, ends, t - 0.5))
    for t in range(6, 11):                     # phase 2: everyone moves, 10/s each, after a 1 s pause
        c = [c[0] + (10 if t > 6 else 0), c[1] + (10 if t > 6 else 0), c[2] + (10 if t > 6 else 0)]
        samples.append(sample(t, 2, c, ends, t - 0.5))
    samples.append(sample(11, 3, c, ends, 10.5))  # phase 3: a restart, then drained at once
    for t in range(12, 14):
        samples.append(sample(t, 3, ends, ends, 0.0))
    phases = [{"phase": 1, "label": "1 consumer, 100 ms/event", "instances": 1, "throttle_ms": 100,
               "start_t": 0.0, "end_t": 5.5},
              {"phase": 2, "label": "3 consumers, 100 ms/event", "instances": 3, "throttle_ms": 100,
               "start_t": 5.5, "end_t": 10.5},
              {"phase": 3, "label": "1 consumer, unthrottled", "instances": 1, "throttle_ms": 0,
               "start_t": 10.5, "end_t": 13.0}]
    return samples, phases


def lag_result() -> dict:
    from lab import experiments
    samples, phases = lag_samples()
    experiments.annotate_status(samples, window_s=3, stop_after_s=15)
    return {"group": "inventory-grp", "topic": "OrderEvents",
            "burst": {"requested": 300, "produced": 300, "failed": 0, "duration_s": 0.05, "events_per_s": 6000.0,
                      "by_partition": {"0": 100, "1": 100, "2": 100}},
            "burst_t": 0.5, "phases": experiments.summarize_phases(samples, phases, 3, 15), "samples": samples,
            "caught_up": True, "caught_up_t": 12.0, "scale_out_speedup": 3.0, "status_window_s": 3,
            "stop_after_s": 15, "final_status": {"status": "OK", "reason": "caught up", "partitions": {}}}


def load_result() -> dict:
    from lab import experiments
    batches = [{"batch": i + 1, "requested": 100, "produced": 100, "failed": 0, "duration_s": 0.1,
                "events_per_s": 1000.0 + i, "by_partition": {"0": 30, "1": 33, "2": 37}} for i in range(4)]
    return {
        "batches": batches,
        "totals": {"requested": 400, "produced": 400, "failed": 0, "bulk_duration_s": 0.4, "events_per_s": 1000.0,
                   "wall_s_until_acked": 0.5, "by_partition": {"0": 120, "1": 132, "2": 148}},
        "analytics_counted": True, "analytics_counted_after_s": 2.5, "analytics_counted_after_last_ack_s": 2.0,
        "inventory_read_back": {"records": 400, "ours": 400, "duplicates": 0, "foreign": 0, "invalid": 0,
                                "reserved": 390, "rejected": 10},
        "reconciliation": experiments.reconcile(400, 400, 0, 400, 400),
        "base_seed": 7,
    }


def snapshot(orders: int) -> dict:
    """/metrics as analytics computes it: orders of pizza x3 and their inventory events, folded by the real fold."""
    from services.analytics.metrics import MetricsState, fold_record, snapshot as metrics_snapshot
    from services.common import events
    from services.inventory.stock import inventory_event, reserve
    state, stock = MetricsState(), [{}, {}, {}]
    for i in range(orders):
        order, w = events.new_order("pizza", 3, created_ms=1_700_000_000_000 + i), i % 3
        fold_record(state, "OrderEvents", w, events.encode(order))
        status, left = reserve(stock[w], "pizza", 3, initial=1_000_000)
        done = inventory_event(order, w, status, left, processed_ms=order["created_ms"] + 4 + i % 6)
        fold_record(state, "InventoryEvents", w, events.encode(done))
    return metrics_snapshot(state)


def replay_result() -> dict:
    truth = {"orders_total": 700, "inventory_events_total": 700, "qty_total": 2100, "reserved": 700, "rejected": 0}
    return {"before": snapshot(700), "after": snapshot(700), "diff": {}, "events_replayed": 1400,
            "duration_s": 0.5, "events_per_s": 2800.0, "group_id": "analytics-replay-x", "truth": truth,
            "after_matches_truth": True}


def demo_result() -> dict:
    truth = {"orders_total": 800, "inventory_events_total": 800, "qty_total": 2400, "reserved": 800, "rejected": 0}
    drifted = {"orders_total": 100, "inventory_events_total": 100, "qty_total": 300, "reserved": 100, "rejected": 0}
    zero = dict.fromkeys(truth, 0)
    return {"post_reset_orders": 100, "after_reset": zero, "drifted": drifted, "truth": truth,
            "replay": {"before": snapshot(100), "after": snapshot(800), "diff": {}, "events_replayed": 1600,
                       "duration_s": 0.5, "events_per_s": 3200.0, "group_id": "analytics-replay-y"},
            "replay_after_matches_truth": True, "restored": truth, "restored_matches_truth": True}
