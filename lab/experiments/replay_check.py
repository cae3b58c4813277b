"""Experiment 03, replay checked against the true counts read from the topics, and the drift demo."""
from __future__ import annotations

import logging

from kafka import TopicPartition

from lab.experiments.client import metrics, produce, replay, wait_live, wait_settled
from lab.stack import ANALYTICS, LabStack, restore_services
from services.common import events, kafka_clients
from services.common.events import DecodeError
from services.common.topics import INVENTORY_EVENTS, ORDER_EVENTS

log = logging.getLogger(__name__)


KEY_METRICS = ("orders_total", "inventory_events_total", "qty_total", "reserved", "rejected")


def true_counts(cfg, timeout_s: float = 300) -> dict:
    """The key metrics counted straight from both topics (read_committed, valid events only)."""
    c = kafka_clients.consumer(cfg, group_id=None, client_id="lab-truth", max_poll_records=5000)
    counts = dict.fromkeys(KEY_METRICS, 0)
    try:
        for topic in (ORDER_EVENTS, INVENTORY_EVENTS):
            for p in sorted(c.partitions_for_topic(topic) or ()):
                for rec in kafka_clients.read_range(c, TopicPartition(topic, p), timeout_s=timeout_s):
                    try:
                        if topic == ORDER_EVENTS:
                            ev = events.decode_order(rec.value)
                            counts["orders_total"] += 1
                            counts["qty_total"] += ev["qty"]
                        else:
                            ev = events.decode_inventory(rec.value)
                            counts["inventory_events_total"] += 1
                            counts[ev["status"]] += 1
                    except DecodeError:
                        continue  # dead letters: the fold does not count them either
    finally:
        c.close()
    return counts


def key_metrics(snapshot: dict) -> dict:
    return {k: snapshot[k] for k in KEY_METRICS}


def replay_summary(result: dict) -> dict:
    """POST /replay's answer without the bulky parts a report does not need twice."""
    return {k: result[k] for k in ("before", "after", "diff", "events_replayed", "duration_s",
                                   "events_per_s", "group_id")}


def run_replay(stack: LabStack) -> dict:
    """POST /replay on a settled stack, with the true counts read from the topics alongside."""
    wait_settled(stack)
    result = replay_summary(replay(stack))
    truth = true_counts(stack.service_config())
    log.info("replay: %d events in %.2fs (%.0f events/s), %d metrics differ",
             result["events_replayed"], result["duration_s"], result["events_per_s"], len(result["diff"]))
    return {**result, "truth": truth, "after_matches_truth": key_metrics(result["after"]) == truth}


def run_replay_matters(stack: LabStack, post_reset_orders: int) -> dict:
    """Restart analytics without its rebuild, let it count new orders only, then show replay restoring the truth.

    Whatever happens, analytics ends restarted normally (rebuilding its state at start).
    """
    cfg = stack.service_config()
    wait_settled(stack)
    try:
        stack.restart(ANALYTICS, {"ANALYTICS_REBUILD": 0})
        reset = key_metrics(wait_live(stack))
        log.info("analytics restarted without rebuild: orders_total=%d", reset["orders_total"])
        produced = produce(stack, post_reset_orders)["produced"]
        wait_settled(stack)
        drifted = key_metrics(metrics(stack))
        truth = true_counts(cfg)
        log.info("live metrics drifted: orders_total=%d, true %d", drifted["orders_total"], truth["orders_total"])
        result = replay_summary(replay(stack))
    finally:
        restore_services(stack)
    restored = key_metrics(wait_settled(stack))
    log.info("analytics restarted normally: orders_total=%d", restored["orders_total"])
    return {
        "post_reset_orders": produced,
        "after_reset": reset,
        "drifted": drifted,
        "truth": truth,
        "replay": result,
        "replay_after_matches_truth": key_metrics(result["after"]) == truth,
        "restored": restored,
        "restored_matches_truth": restored == truth,
    }
