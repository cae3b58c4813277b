"""The live side of analytics: group analytics-grp folds both topics into one MetricsState.

Why a crash at any point neither loses nor doubles a count:

- The fold in memory is always a pair: the state and `positions`, per input partition the
  offset below which every record is folded in and none at or above it. The consumer thread
  changes the two together, between batches, and a snapshot (services/analytics/snapshot.py)
  is a copy of the pair.
- A start (ANALYTICS_REBUILD=1, the default) takes the newest trusted snapshot in
  AnalyticsState as its pair, or an empty state at the logs' start when there is none. A
  reader of its own then folds from the pair's offsets up to analytics-grp's committed
  offsets, and the group consumer goes live from there.
- The snapshot's offsets win over the group's commits: a record below `positions` is never
  folded again, whatever offset the group consumer is handed. The commits say how far the
  live loop got: for lag, and for which InventoryEvents poison it has already parked in the
  DLQ (the catch-up from the snapshot to the commits sends no dead letters).
- A snapshot is written after its batch's commit, so its offsets are never ahead of the
  group's (unless the group's offsets were reset or deleted: the skip above covers that). A
  crash before a snapshot is acknowledged leaves an older snapshot the newest: an older pair,
  just as valid, and the restart folds a little more. A crash between a fold and its commit
  loses the in-memory pair, and the restart folds that batch again from the snapshot's pair.
- ANALYTICS_REBUILD=0: no restore; an empty state from the committed offsets on (the replay
  demo's drift). That state is not the fold of the history, so it writes no snapshots.
- ANALYTICS_SNAPSHOT_EVERY_S=0: no snapshots read or written; every start folds the whole
  history up to the committed offsets, as before snapshots.
- POST /replay (replay.py) does not use snapshots: a disposable group folds every partition
  from offset 0, and the result must equal /metrics.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque

from kafka import OffsetAndMetadata, TopicPartition
from kafka.errors import KafkaError

from services.analytics.metrics import MetricsState, fold_record, snapshot
from services.analytics.snapshot import SnapshotStore
from services.common import kafka_clients
from services.common.config import Config
from services.common.dead_letters import dead_letter_headers
from services.common.kafka_access import explain
from services.common.topics import ANALYTICS_GROUP, DLQ_FOR, INVENTORY_EVENTS, ORDER_EVENTS
from services.common.watchdog import StallWatch, group_lists

log = logging.getLogger(__name__)
GROUP = ANALYTICS_GROUP  # this consumer's group
TOPICS = (ORDER_EVENTS, INVENTORY_EVENTS)


class LiveMetrics:
    """Owns the analytics-grp consumer thread and the state it folds into."""

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.state = MetricsState()
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.phase = "starting"          # starting -> rebuilding -> live
        self.rebuilt_events = 0
        # The other half of the pair (see the module's docstring): partition -> first offset not folded.
        self.positions: dict[TopicPartition, int] = {}
        self.start_info: dict = {"restored_from": None}
        self.snapshots: SnapshotStore | None = None
        self.error: str | None = None
        self.started = time.time()
        self.consumed_live = 0
        self._recent: deque[tuple[float, int]] = deque(maxlen=120)  # (time, events folded) per batch
        self._thread = threading.Thread(target=self._run, name="analytics-live", daemon=True)

    def start(self) -> "LiveMetrics":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stop_event.set()
        self._thread.join(timeout=10)

    def snapshot(self) -> dict:
        with self.lock:
            return snapshot(self.state)

    def throughput(self, window_s: float = 10.0) -> dict:
        now = time.time()
        with self.lock:
            recent = sum(n for t, n in self._recent if now - t <= window_s)
        return {"events_per_s_last_10s": round(recent / window_s, 1),
                "events_consumed_live": self.consumed_live,
                "events_rebuilt_at_start": self.rebuilt_events}

    def _run(self) -> None:
        # Retry forever: a broker that is down at start, or goes away, must not kill analytics.
        while not self.stop_event.is_set():
            try:
                self._consume()
                return
            except KafkaError as exc:
                # A fault of the cluster or of the connection (down, TLS, login, ACL): one line,
                # logged when it changes, not a traceback every 2 s.
                message = explain(exc, self.cfg)
                if message != self.error:
                    log.warning("analytics consumer: %s; retrying every 2s", message)
                self.error = message
                self.stop_event.wait(2)
            except Exception as exc:  # noqa: BLE001 - logged, then retried after a pause
                self.error = f"{exc.__class__.__name__}: {exc}"
                log.exception("analytics consumer failed; retrying in 2s")
                self.stop_event.wait(2)

    def _consume(self) -> None:
        cfg = self.cfg
        consumer = kafka_clients.consumer(cfg, group_id=GROUP, client_id="analytics-consumer",
                                          max_poll_records=2000, **kafka_clients.STREAM_FETCH)
        dlq = kafka_clients.producer(cfg, client_id="analytics-dlq")
        # A partial state (ANALYTICS_REBUILD=0) must never become another start's pair.
        store = SnapshotStore(cfg) if cfg.analytics_rebuild and cfg.analytics_snapshot_every_s > 0 else None
        self.snapshots = store
        try:
            if cfg.analytics_rebuild:
                # Every (re)start restores from Kafka into a fresh state: a pair of a failed
                # incarnation is not trusted, and a snapshot or the history gives a valid one.
                topic_ids = self._restore(consumer, store)
            else:
                topic_ids = {}
                with self.lock:
                    self.state, self.positions = MetricsState(), {}
                self.start_info = {"restored_from": "nothing (ANALYTICS_REBUILD=0)", "events_folded": 0}
            consumer.subscribe(list(TOPICS))
            self.phase, self.error = "live", None
            log.info("analytics live rebuilt_events=%d", self.rebuilt_events)
            watch = StallWatch(consumer, in_group=group_lists(cfg, GROUP, consumer))
            while not self.stop_event.is_set():
                batch = consumer.poll(timeout_ms=200)
                if not batch:
                    watch.check()
                    continue
                n = 0
                offsets = {}
                with self.lock:
                    for tp, records in batch.items():
                        start = self.positions.get(tp, 0)
                        for rec in records:
                            if rec.offset < start:
                                continue    # already in the state: the pair's offsets win over the group's
                            reason = fold_record(self.state, rec.topic, rec.partition, rec.value)
                            # OrderEvents poison goes to its DLQ from inventory-consumer; only
                            # InventoryEvents has no other reader to park it.
                            if reason and rec.topic == INVENTORY_EVENTS:
                                dlq.send(DLQ_FOR[rec.topic], key=rec.key, value=rec.value,
                                         headers=dead_letter_headers(reason, rec.topic, rec.partition, rec.offset))
                            n += 1
                        self.positions[tp] = max(start, records[-1].offset + 1)
                        offsets[tp] = OffsetAndMetadata(self.positions[tp], "", -1)
                    self.consumed_live += n
                    self._recent.append((time.time(), n))
                dlq.flush()
                # Commit after folding: the commit marks how far the live loop got; a restart
                # starts from its snapshot's pair in any case (see the module's docstring).
                consumer.commit(offsets, timeout_ms=cfg.kafka_timeout_ms * 3)
                watch.progressed(offsets)
                if store is not None and store.due():
                    self._write_snapshot(store, topic_ids)
            if store is not None:
                # A clean stop: the next start folds nothing.
                self._write_snapshot(store, topic_ids)
        finally:
            consumer.close()
            dlq.close(timeout=5)
            if store is not None:
                store.close()

    def _write_snapshot(self, store: SnapshotStore, topic_ids: dict) -> None:
        # Only this thread changes the pair, so it is read here without the lock.
        try:
            store.write(self.state, dict(self.positions), topic_ids)
        except KafkaError as exc:
            # A snapshot only shortens the next start; the fold goes on without it.
            log.warning("analytics snapshot not written: %s", explain(exc, self.cfg))

    def _restore(self, consumer, store: SnapshotStore | None) -> dict:
        """Load the newest trusted snapshot (or nothing), then fold up to analytics-grp's committed offsets."""
        self.phase = "rebuilding"
        reader = kafka_clients.consumer(self.cfg, group_id=None, client_id="analytics-rebuild",
                                        max_poll_records=5000)
        try:
            tps = [TopicPartition(t, p) for t in TOPICS for p in sorted(reader.partitions_for_topic(t) or ())]
            t0 = time.monotonic()
            begins = reader.beginning_offsets(tps)
            ends = kafka_clients.end_offsets(reader, tps)
            topic_ids = kafka_clients.topic_ids(reader, TOPICS)
            snap, ignored = (store.newest_trusted(reader, topic_ids, begins, ends) if store is not None
                             else (None, []))
            if snap is not None:
                state, starts = snap.state, dict(snap.offsets)
            else:
                state, starts = MetricsState(), dict(begins)
            targets = {}
            for tp in tps:
                committed = consumer.committed(tp) or 0
                targets[tp] = max(starts[tp], committed)
            n = read_into(reader, targets, state, starts=starts)
            with self.lock:
                self.state, self.positions = state, targets
                self.rebuilt_events = n
            self.start_info = {"restored_from": "snapshot" if snap is not None else "history",
                               "snapshot": snap.describe() if snap is not None else None,
                               "events_folded": n, "ignored": ignored,
                               "duration_s": round(time.monotonic() - t0, 3)}
            log.info("analytics restored from=%s events_folded=%d ignored=%d in %.2fs",
                     self.start_info["restored_from"], n, len(ignored), time.monotonic() - t0)
        finally:
            reader.close()
        if store is not None and n:
            self._write_snapshot(store, topic_ids)
        return topic_ids


def read_into(reader, targets: dict[TopicPartition, int], state: MetricsState,
              timeout_s: float = 300.0, starts: dict[TopicPartition, int] | None = None) -> int:
    """Fold each partition of targets from starts (default: its beginning) up to (not including) its target offset."""
    if not targets:
        return 0
    reader.assign(list(targets))
    if starts is None:
        reader.seek_to_beginning(*targets)
    else:
        for tp in targets:
            reader.seek(tp, starts[tp])
    pending = {tp for tp, end in targets.items() if reader.position(tp) < end}
    n = 0
    deadline = time.monotonic() + timeout_s
    while pending:
        if time.monotonic() > deadline:
            raise TimeoutError(f"reading to the target offsets took over {timeout_s}s: {sorted(map(str, pending))}")
        for tp, records in reader.poll(timeout_ms=500).items():
            end = targets[tp]
            start = starts[tp] if starts is not None else 0
            for rec in records:
                if rec.offset >= end:
                    break
                if rec.offset < start:
                    continue
                fold_record(state, rec.topic, rec.partition, rec.value)
                n += 1
        for tp in list(pending):
            if reader.position(tp) >= targets[tp]:
                pending.discard(tp)
                reader.pause(tp)
    return n
