"""A stall detector for consumer loops.

Seen in tests: after a broker restart, a kafka-python 3.0.12 consumer can stay connected yet
never fetch again, with data waiting on its partitions. Nothing raises, so the loop would wait
forever. The watch notices (no records for window_s while a partition has records past our
position) and raises, and the service starts over with fresh clients from Kafka's state.
"""
from __future__ import annotations

import logging
import time

from services.common.kafka_clients import end_offsets

log = logging.getLogger(__name__)


class ConsumerStalled(RuntimeError):
    """The consumer stopped fetching although its partitions have data."""


class StallWatch:
    def __init__(self, consumer, window_s: float = 20.0):
        self.consumer = consumer
        self.window_s = window_s
        self.last = time.monotonic()

    def progressed(self) -> None:
        self.last = time.monotonic()

    def check(self) -> None:
        """Raise ConsumerStalled if nothing came for window_s although there is data to read."""
        if time.monotonic() - self.last < self.window_s:
            return
        self.last = time.monotonic()  # check at most once per window
        assigned = list(self.consumer.assignment())
        if not assigned:
            return
        ends = end_offsets(self.consumer, assigned, timeout_ms=10000)
        behind = {str(tp): (self.consumer.position(tp, timeout_ms=10000), ends[tp])
                  for tp in assigned if self.consumer.position(tp, timeout_ms=10000) < ends[tp]}
        if behind:
            raise ConsumerStalled(f"no records for {self.window_s:.0f}s with data waiting: {behind}")
