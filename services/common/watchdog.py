"""A stall detector for consumer loops.

Two ways a kafka-python 3.0.12 consumer was seen to stop for good, with nothing raised:

- after a broker restart it stays connected yet never fetches again, with data waiting on
  its partitions;
- its first assignment came before the topics' metadata (no partitions), the metadata then
  asked for a rejoin, and the rejoin never finished on the client: the broker received the
  assignment, the client never took it, stopped heartbeating and was dropped from the group
  10 s later, and then polled an empty assignment at 87% of a core for as long as it ran
  (inventory-consumer, test session stack, 2026-12-02).

The watch notices these (no records for window_s, and data waiting on our partitions, or
commits that never reached the group, or no partitions while the group does not list our
member id) and raises, and the service starts over with fresh clients from Kafka's state.
"""
from __future__ import annotations

import logging
import time
from typing import Callable

from kafka.errors import KafkaError

from services.common import kafka_clients
from services.common.config import Config

log = logging.getLogger(__name__)


class ConsumerStalled(RuntimeError):
    """The consumer stopped fetching although its partitions have data, or silently left its group."""


def group_lists(cfg: Config, group: str, consumer) -> Callable[[], bool | None]:
    """A check for StallWatch: whether group lists consumer's member id; None when it cannot tell.

    None covers a group that answers with an error (a coordinator moving or loading) and a
    broker that cannot be reached: not knowing is no reason to restart a consumer. kafka-python
    3.0.12's describe_groups puts such errors in the result instead of raising them, with an
    empty member list.
    """
    def check() -> bool | None:
        member_id = consumer.group_metadata().member_id
        try:
            admin = kafka_clients.admin(cfg, client_id=f"{group}-watch")
            try:
                desc = admin.describe_groups([group])[group]
            finally:
                admin.close()
        except (KafkaError, OSError) as exc:
            log.warning("could not describe group %s: %r", group, exc)
            return None
        if desc.get("error"):
            log.warning("could not describe group %s: %s", group, desc["error"])
            return None
        return any(m["member_id"] == member_id for m in desc["members"])
    return check


class StallWatch:
    def __init__(self, consumer, window_s: float = 20.0, in_group: Callable[[], bool | None] | None = None):
        self.consumer = consumer
        self.window_s = window_s
        # Without partitions the consumer may be an idle member (more instances than
        # partitions) or one that fell out of its group: in_group tells the two apart.
        self.in_group = in_group
        self.last = time.monotonic()
        self.committed_to: dict = {}  # tp -> the offset we last committed for it

    def progressed(self, committed: dict | None = None) -> None:
        """Records came; committed is what the service then committed ({tp: OffsetAndMetadata})."""
        self.last = time.monotonic()
        for tp, om in (committed or {}).items():
            self.committed_to[tp] = om.offset

    def check(self) -> None:
        """After window_s without records, raise ConsumerStalled if there is data to read, if
        the group's offsets never reached what we committed, or if there are no partitions
        and the group does not list this consumer."""
        if time.monotonic() - self.last < self.window_s:
            return
        self.last = time.monotonic()  # check at most once per window
        assigned = list(self.consumer.assignment())
        if not assigned:
            if self.in_group is not None and self.in_group() is False:
                raise ConsumerStalled(f"no partitions for {self.window_s:.0f}s and no longer a member of the group")
            return
        ends = kafka_clients.end_offsets(self.consumer, assigned, timeout_ms=10000)
        positions = {tp: self.consumer.position(tp, timeout_ms=10000) for tp in assigned}
        behind = {str(tp): (positions[tp], ends[tp]) for tp in assigned if positions[tp] < ends[tp]}
        if behind:
            raise ConsumerStalled(f"no records for {self.window_s:.0f}s with data waiting: {behind}")
        # Both services commit what they process before they poll again, so after an idle
        # window the group's offsets must have reached what they last committed. Seen once
        # after a broker outage: kafka-python's producer I/O thread died ("Invalid transition
        # attempted from state READY to state READY"), later transactions returned from
        # commit_transaction without committing, and inventory sat at the end of its
        # partitions with its offsets behind, for good. (Not the position: on transactional
        # topics it runs past commit markers and aborted records that no commit covers.)
        lost = {}
        for tp, offset in self.committed_to.items():
            if tp in positions:
                on_broker = self.consumer.committed(tp, timeout_ms=10000) or 0
                if on_broker < offset:
                    lost[str(tp)] = (on_broker, offset)
        if lost:
            raise ConsumerStalled(f"commits did not reach the group for {self.window_s:.0f}s "
                                  f"(group's offset, committed by us): {lost}")
