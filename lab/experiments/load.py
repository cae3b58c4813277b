"""Experiment 01, the 10k load: produce in batches, read the InventoryEvents back, reconcile three counts."""
from __future__ import annotations

import logging
import random
import time

from kafka import TopicPartition

from lab.experiments.client import produce, wait_counted, wait_settled
from lab.stack import LabStack
from services.common import events, kafka_clients
from services.common.events import DecodeError
from services.common.topics import INVENTORY_EVENTS

log = logging.getLogger(__name__)


def split(n: int, parts: int) -> list[int]:
    """n as `parts` near-equal batch sizes, larger ones first: 10000/4 -> [2500]*4, 10/3 -> [4, 3, 3]."""
    if n < 1 or parts < 1:
        raise ValueError(f"need n >= 1 and parts >= 1, got n={n}, parts={parts}")
    parts = min(parts, n)
    return [n // parts + (1 if i < n % parts else 0) for i in range(parts)]


def expected_order_ids(sizes: list[int], item: str, base_seed: int) -> set[str]:
    """The order ids the producer generates for seeded bulks (events.bulk_orders is deterministic with a seed)."""
    return {ev["order_id"] for i, n in enumerate(sizes) for ev in events.bulk_orders(n, item, seed=base_seed + i)}


def topic_end_offsets(cfg, topic: str) -> dict[int, int]:
    """{partition: last stable offset} of topic now."""
    c = kafka_clients.consumer(cfg, group_id=None, client_id="lab-offsets")
    try:
        tps = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic) or ())]
        return {tp.partition: off for tp, off in kafka_clients.end_offsets(c, tps).items()}
    finally:
        c.close()


def read_back_inventory(cfg, start: dict[int, int], order_ids: set[str], timeout_s: float = 120) -> dict:
    """Read InventoryEvents from `start` to its end, directly from Kafka, and tally what belongs to order_ids."""
    c = kafka_clients.consumer(cfg, group_id=None, client_id="lab-readback", max_poll_records=5000)
    seen: set[str] = set()
    tally = {"records": 0, "ours": 0, "duplicates": 0, "foreign": 0, "invalid": 0, "reserved": 0, "rejected": 0}
    try:
        for p in sorted(start):
            for rec in kafka_clients.read_range(c, TopicPartition(INVENTORY_EVENTS, p), start[p], timeout_s=timeout_s):
                tally["records"] += 1
                try:
                    ev = events.decode_inventory(rec.value)
                except DecodeError:
                    tally["invalid"] += 1
                    continue
                if ev["order_id"] not in order_ids:
                    tally["foreign"] += 1
                elif ev["order_id"] in seen:
                    tally["duplicates"] += 1
                else:
                    seen.add(ev["order_id"])
                    tally["ours"] += 1
                    tally[ev["status"]] += 1
    finally:
        c.close()
    return tally


def reconcile(produced: int, read_back: int, duplicates: int, orders_delta: int, inventory_delta: int) -> dict:
    """Compare the three counts of one load; every mismatch is named, none is smoothed over."""
    counts = {"produced (acknowledged)": produced,
              "InventoryEvents read back (distinct orders)": read_back,
              "/metrics orders_total increase": orders_delta,
              "/metrics inventory_events_total increase": inventory_delta}
    mismatches = [f"{name} = {value}, expected {produced}" for name, value in counts.items() if value != produced]
    if duplicates:
        mismatches.append(f"{duplicates} duplicate InventoryEvents for the same order")
    return {"counts": counts, "duplicates": duplicates, "reconciled": not mismatches, "mismatches": mismatches}


def run_load(stack: LabStack, n_events: int, batches: int, item: str = events.MIXED,
             count_timeout_s: float = 180) -> dict:
    """Produce n_events in batches via POST /orders/bulk, wait for analytics, reconcile three counts."""
    cfg = stack.service_config()
    before = wait_settled(stack)
    inventory_start = topic_end_offsets(cfg, INVENTORY_EVENTS)
    # Seeded bulks make the order ids known in advance, so the read-back can tell our events
    # from any others; a fresh random base seed per run keeps ids unique across runs.
    base_seed = random.randrange(2 ** 31)
    sizes = split(n_events, batches)
    rows = []
    t0 = time.monotonic()
    for i, size in enumerate(sizes):
        r = produce(stack, size, item, seed=base_seed + i)
        rows.append({"batch": i + 1, "requested": r["requested"], "produced": r["produced"],
                     "failed": r["failed"], "duration_s": r["duration_s"], "events_per_s": r["events_per_s"],
                     "by_partition": r["by_partition"], **({"error": r["error"]} if "error" in r else {})})
        log.info("load batch %d/%d: %d of %d events acknowledged in %.2fs (%.0f events/s), partitions %s",
                 i + 1, len(sizes), r["produced"], size, r["duration_s"], r["events_per_s"], r["by_partition"])
    acked_t = time.monotonic() - t0
    produced = sum(r["produced"] for r in rows)
    after, counted = wait_counted(stack, before["orders_total"] + produced,
                                  before["inventory_events_total"] + produced, count_timeout_s)
    counted_t = time.monotonic() - t0
    log.info("analytics %s the load %.2fs after the first batch (%.2fs after the last ack)",
             "counted" if counted else "did NOT count", counted_t, counted_t - acked_t)
    tally = read_back_inventory(cfg, inventory_start, expected_order_ids(sizes, item, base_seed))
    rec = reconcile(produced, tally["ours"], tally["duplicates"],
                    after["orders_total"] - before["orders_total"],
                    after["inventory_events_total"] - before["inventory_events_total"])
    log.info("reconciliation: %s", "all counts agree" if rec["reconciled"] else "; ".join(rec["mismatches"]))
    bulk_s = sum(r["duration_s"] for r in rows)
    partitions: dict[str, int] = {}
    for r in rows:
        for p, c in r["by_partition"].items():
            partitions[p] = partitions.get(p, 0) + c
    return {
        "batches": rows,
        "totals": {"requested": n_events, "produced": produced, "failed": sum(r["failed"] for r in rows),
                   "bulk_duration_s": round(bulk_s, 4),
                   "events_per_s": round(produced / bulk_s, 1) if bulk_s else 0.0,
                   "wall_s_until_acked": round(acked_t, 3),
                   "by_partition": dict(sorted(partitions.items()))},
        "analytics_counted": counted,
        "analytics_counted_after_s": round(counted_t, 3),
        "analytics_counted_after_last_ack_s": round(counted_t - acked_t, 3),
        "inventory_read_back": tally,
        "reconciliation": rec,
        "base_seed": base_seed,
    }
