"""Throughput statistics for GET /stats: totals, bulk rates, partition spread, send latency."""
from __future__ import annotations

import threading
import time
from collections import Counter, deque

from services.common.percentiles import percentile


class ProducerStats:
    """Thread-safe counters; latencies keep the last `window` acknowledged sends."""

    def __init__(self, window: int = 20000):
        self._lock = threading.Lock()
        self.started = time.time()
        self.acked = 0
        self.errors = 0
        self.by_partition: Counter[int] = Counter()
        self.latencies_ms: deque[float] = deque(maxlen=window)
        self.last_bulk: dict | None = None
        self.best_bulk_eps = 0.0
        self.bulks = 0

    def record_acks(self, partitions: Counter, latencies_ms, errors: int = 0) -> None:
        with self._lock:
            self.acked += sum(partitions.values())
            self.errors += errors
            self.by_partition.update(partitions)
            self.latencies_ms.extend(latencies_ms)

    def record_bulk(self, summary: dict) -> None:
        with self._lock:
            self.bulks += 1
            self.last_bulk = summary
            self.best_bulk_eps = max(self.best_bulk_eps, summary["events_per_s"])

    def snapshot(self) -> dict:
        with self._lock:
            lat = sorted(self.latencies_ms)
            uptime = time.time() - self.started
            return {
                "events_acked_total": self.acked,
                "events_failed_total": self.errors,
                "bulk_requests_total": self.bulks,
                "last_bulk": self.last_bulk,
                "best_bulk_events_per_s": round(self.best_bulk_eps, 1),
                "by_partition": {str(p): c for p, c in sorted(self.by_partition.items())},
                "send_latency_ms": {
                    "samples": len(lat),
                    "p50": _r(percentile(lat, 50)),
                    "p95": _r(percentile(lat, 95)),
                    "p99": _r(percentile(lat, 99)),
                    "max": _r(lat[-1] if lat else None),
                },
                "uptime_s": round(uptime, 1),
            }


def _r(x):
    return None if x is None else round(x, 3)
