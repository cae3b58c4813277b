"""Prometheus views of the services' live state, built at scrape time by custom collectors.

Lag uses kafka-lag-exporter's names (kafka_consumergroup_group_lag, ..._lag_seconds, labels
group/topic/partition), so dashboards and alerts written for it work unchanged.
"""
from __future__ import annotations

import gc
import logging
from collections.abc import Callable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from services.common.lag import LagUnavailable
from services.common.topics import ORDER_EVENTS

log = logging.getLogger(__name__)

PATH = "/metrics/prometheus"  # served by services.common.http; scraped by monitoring/prometheus.yml


class FrozenHeapCollector(Collector):
    """How many start-up objects the collector skips (services/common/runtime.py); 0 if never frozen."""

    def collect(self):
        yield GaugeMetricFamily("python_gc_frozen_objects", "Objects frozen after start-up, skipped by gc",
                                value=gc.get_freeze_count())


class ProducerCollector(Collector):
    """Events the broker acknowledged, per partition, and events that failed (producer-order)."""

    def __init__(self, stats):
        self.stats = stats  # services.producer.stats.ProducerStats

    def collect(self):
        snap = self.stats.snapshot()
        produced = CounterMetricFamily("lab_producer_events_produced", "Events acknowledged by the broker",
                                       labels=["topic", "partition"])
        for partition, n in snap["by_partition"].items():
            produced.add_metric([ORDER_EVENTS, partition], n)
        failed = CounterMetricFamily("lab_producer_events_failed", "Events the broker did not acknowledge",
                                     labels=["topic"])
        failed.add_metric([ORDER_EVENTS], snap["events_failed_total"])
        yield produced
        yield failed


class LiveStateCollector(Collector):
    """Events folded into analytics' live state (rebuild included) and dead letters, per topic."""

    def __init__(self, live):
        self.live = live  # services.analytics.live.LiveMetrics

    def collect(self):
        with self.live.lock:
            by_partition = {t: dict(c) for t, c in self.live.state.events_by_partition.items()}
            dead = dict(self.live.state.dead_letters)
        consumed = CounterMetricFamily("lab_analytics_events_consumed", "Events folded into the live metrics",
                                       labels=["topic", "partition"])
        for topic, counts in sorted(by_partition.items()):
            for partition, n in sorted(counts.items()):
                consumed.add_metric([topic, str(partition)], n)
        dead_letters = CounterMetricFamily("lab_analytics_dead_letters", "Records that failed to decode",
                                           labels=["topic"])
        for topic, n in sorted(dead.items()):
            dead_letters.add_metric([topic], n)
        yield consumed
        yield dead_letters


class LagCollector(Collector):
    """Per-partition lag of the consumer groups, read from the broker at each scrape."""

    def __init__(self, read_lag: Callable[[], list[dict]]):
        self.read_lag = read_lag          # -> rows shaped like services.common.lag.PartitionLag.as_dict()

    def collect(self):
        labels = ["group", "topic", "partition"]
        lag = GaugeMetricFamily("kafka_consumergroup_group_lag", "Records not yet processed by the group",
                                labels=labels)
        lag_s = GaugeMetricFamily("kafka_consumergroup_group_lag_seconds",
                                  "Age of the oldest record not yet processed by the group", labels=labels)
        ok = GaugeMetricFamily("lab_lag_read_success", "1 if the last lag read reached the broker, else 0")
        try:
            rows = self.read_lag()
        except LagUnavailable as exc:
            # A down broker must not break the scrape: the other metrics still matter.
            log.warning("lag read failed: %s", exc)
            rows = None
        for r in rows or ():
            key = [r["group"], r["topic"], str(r["partition"])]
            lag.add_metric(key, r["lag"])
            if r["lag_seconds"] is not None:  # unknown without a readable record: leave it out
                lag_s.add_metric(key, r["lag_seconds"])
        ok.add_metric([], 0 if rows is None else 1)
        yield lag
        yield lag_s
        yield ok


def export_producer(registry, stats) -> None:
    """Register producer-order's event counters in its app registry."""
    registry.register(ProducerCollector(stats))


def export_analytics(registry, live, read_lag: Callable[[], list[dict]]) -> None:
    """Register analytics-consumer's consumed, dead-letter and lag metrics in its app registry."""
    registry.register(LiveStateCollector(live))
    registry.register(LagCollector(read_lag))
