"""A stall detector for consumer loops.

Two ways a kafka-python 3.0.12 consumer was seen to stop for good, with nothing raised:

- after a broker restart it stays connected yet never fetches again, with data waiting on
  its partitions;
- its first assignment came before the topics' metadata (no partitions), the metadata then
  asked for a rejoin, and the rejoin never finished on the client: the broker received the
  assignment, the client never took it, stopped heartbeating and was dropped from the group
  10 s later, and then polled an empty assignment at 87% of a core for as long as it ran
  (inventory-consumer, test session stack, 2026-12-02).

The watch notices either (no records for window_s, and data waiting on our partitions, or no
partitions while the group does not list us) and raises, and the service starts over with
fresh clients from Kafka's state.
"""
from __future__ import annotations

import logging
import time
from typing import Callable

from services.common import kafka_clients
from services.common.config import Config

log = logging.getLogger(__name__)


class ConsumerStalled(RuntimeError):
    """The consumer stopped fetching although its partitions have data, or silently left its group."""


def group_lists(cfg: Config, group: str, client_id: str) -> Callable[[], bool]:
    """A check for StallWatch: whether group has a member with client_id (each instance has its own)."""
    def check() -> bool:
        admin = kafka_clients.admin(cfg, client_id=client_id + "-watch")
        try:
            members = admin.describe_groups([group])[group]["members"]
        finally:
            admin.close()
        return any(m["client_id"] == client_id for m in members)
    return check


class StallWatch:
    def __init__(self, consumer, window_s: float = 20.0, in_group: Callable[[], bool] | None = None):
        self.consumer = consumer
        self.window_s = window_s
        # Without partitions the consumer may be an idle member (more instances than
        # partitions) or one that fell out of its group: in_group tells the two apart.
        self.in_group = in_group
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
            if self.in_group is not None and not self.in_group():
                raise ConsumerStalled(f"no partitions for {self.window_s:.0f}s and no longer a member of the group")
            return
        ends = kafka_clients.end_offsets(self.consumer, assigned, timeout_ms=10000)
        behind = {str(tp): (self.consumer.position(tp, timeout_ms=10000), ends[tp])
                  for tp in assigned if self.consumer.position(tp, timeout_ms=10000) < ends[tp]}
        if behind:
            raise ConsumerStalled(f"no records for {self.window_s:.0f}s with data waiting: {behind}")
