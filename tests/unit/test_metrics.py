"""The metrics fold: one pure function for live, rebuild and replay."""
from collections import Counter

from services.analytics.metrics import MetricsState, diff, flatten, fold_record, latency_percentiles, snapshot
from services.common import events
from services.common.topics import INVENTORY_EVENTS, ORDER_EVENTS
from services.inventory.stock import inventory_event


def _records():
    orders = [events.new_order(item, qty, created_ms=1000 + i) for i, (item, qty) in
              enumerate([("pizza", 2), ("sushi", 1), ("pizza", 3), ("taco", 5)])]
    recs = [(ORDER_EVENTS, i % 3, events.encode(o)) for i, o in enumerate(orders)]
    for i, o in enumerate(orders):
        status = "rejected" if o["item"] == "taco" else "reserved"
        inv = inventory_event(o, i % 3, status, 10 - o["qty"], processed_ms=o["created_ms"] + 10 * (i + 1))
        recs.append((INVENTORY_EVENTS, i % 3, events.encode(inv)))
    return recs


def fold_all(records):
    state = MetricsState()
    for topic, partition, value in records:
        fold_record(state, topic, partition, value)
    return snapshot(state)


def test_fold_counts_orders_inventory_and_latency():
    m = fold_all(_records())
    assert m["orders_total"] == 4 and m["inventory_events_total"] == 4
    assert m["orders_by_item"] == {"pizza": 2, "sushi": 1, "taco": 1}
    assert m["qty_by_item"] == {"pizza": 5, "sushi": 1, "taco": 5}
    assert (m["reserved"], m["rejected"]) == (3, 1)
    assert m["reserved_qty_by_item"] == {"pizza": 5, "sushi": 1}
    assert m["events_by_partition"][ORDER_EVENTS] == {"0": 2, "1": 1, "2": 1}
    assert m["latency_ms"]["samples"] == 4 and m["latency_ms"]["max"] == 40 and m["latency_ms"]["p50"] == 20


def test_fold_is_order_independent_across_partitions_and_same_on_refold():
    recs = _records()
    assert fold_all(recs) == fold_all(list(reversed(recs))) == fold_all(recs)


def test_stock_by_item_sums_the_latest_stock_of_each_warehouse():
    state = MetricsState()
    o = events.new_order("pizza", 1)
    for warehouse, left in [(0, 9), (0, 8), (1, 5)]:
        fold_record(state, INVENTORY_EVENTS, warehouse,
                    events.encode(inventory_event(o, warehouse, "reserved", left, o["created_ms"])))
    assert snapshot(state)["stock_by_item"] == {"pizza": 13}


def test_malformed_records_are_counted_as_dead_letters_not_metrics():
    state = MetricsState()
    assert fold_record(state, ORDER_EVENTS, 0, b"garbage") is not None
    assert fold_record(state, INVENTORY_EVENTS, 1, None) is not None
    m = snapshot(state)
    assert m["orders_total"] == 0 and m["dead_letters"] == {INVENTORY_EVENTS: 1, ORDER_EVENTS: 1}
    assert m["dead_letters_total"] == 2


def test_latency_percentiles_nearest_rank():
    hist = Counter({ms: 1 for ms in range(1, 101)})
    p = latency_percentiles(hist)
    assert (p["p50"], p["p95"], p["p99"], p["max"], p["samples"]) == (50, 95, 99, 100, 100)
    assert latency_percentiles(Counter())["p50"] is None


def test_diff_lists_only_what_changed():
    before = {"orders_total": 3, "orders_by_item": {"pizza": 3}}
    after = {"orders_total": 5, "orders_by_item": {"pizza": 3, "taco": 2}}
    assert flatten(after) == {"orders_total": 5, "orders_by_item.pizza": 3, "orders_by_item.taco": 2}
    assert diff(before, after) == {
        "orders_by_item.taco": {"before": None, "after": 2, "delta": None},
        "orders_total": {"before": 3, "after": 5, "delta": 2},
    }
    assert diff(after, after) == {}
