"""POST /replay: a disposable group reads every partition from offset 0 and refolds the metrics."""
from __future__ import annotations

import logging
import threading
import time
import uuid

from kafka import OffsetAndMetadata, TopicPartition

from services.analytics.live import TOPICS, read_into
from services.analytics.metrics import MetricsState, diff, snapshot
from services.common import kafka_clients
from services.common.config import Config
from services.common.topics import REPLAY_GROUP_PREFIX

log = logging.getLogger(__name__)
# Every replay's disposable group starts so (a secured cluster grants analytics this prefix).


class ReplayBusy(RuntimeError):
    """A replay is already running (single-flight)."""


class Replayer:
    def __init__(self, cfg: Config):
        self.cfg = cfg
        self._lock = threading.Lock()

    def run(self, before: dict) -> dict:
        """Replay both topics up to the end offsets seen at the start; compare with `before`."""
        if not self._lock.acquire(blocking=False):
            raise ReplayBusy("a replay is already running")
        try:
            return self._replay(before)
        finally:
            self._lock.release()

    def _replay(self, before: dict) -> dict:
        group_id = f"{REPLAY_GROUP_PREFIX}{uuid.uuid4().hex[:12]}"
        t0 = time.perf_counter()
        consumer = kafka_clients.consumer(self.cfg, group_id=group_id, client_id=group_id,
                                          max_poll_records=5000)
        admin = kafka_clients.admin(self.cfg, client_id=group_id)
        try:
            tps = [TopicPartition(t, p) for t in TOPICS for p in sorted(consumer.partitions_for_topic(t) or ())]
            # The end offsets now are where the replay stops, so it ends while traffic goes on.
            ends = kafka_clients.end_offsets(consumer, tps)
            state = MetricsState()
            n = read_into(consumer, ends, state)
            # Commit the final positions so the disposable group is a real group...
            consumer.commit({tp: OffsetAndMetadata(end, "", -1) for tp, end in ends.items()})
        finally:
            consumer.close()
        try:
            # ...then delete it: nothing of a replay stays on the broker.
            admin.delete_groups([group_id])
        finally:
            admin.close()
        duration = time.perf_counter() - t0
        after = snapshot(state)
        log.info("replay group=%s events=%d duration_s=%.3f", group_id, n, duration)
        return {
            "before": before,
            "after": after,
            "diff": diff(before, after),
            "events_replayed": n,
            "end_offsets": {f"{tp.topic}-{tp.partition}": end for tp, end in sorted(ends.items())},
            "duration_s": round(duration, 4),
            "events_per_s": round(n / duration, 1) if duration > 0 else 0.0,
            "group_id": group_id,
        }
