"""The live side of analytics: group analytics-grp folds both topics into one MetricsState."""
from __future__ import annotations

import logging
import threading
import time
from collections import deque

from kafka import TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from services.common import events, kafka_clients
from services.common.config import Config
from services.common.kafka_access import explain
from services.common.topics import DLQ_FOR, INVENTORY_EVENTS, ORDER_EVENTS
from services.common.watchdog import StallWatch, group_lists
from services.analytics.metrics import MetricsState, fold_record, snapshot
from services.inventory.worker import dead_letter_headers

log = logging.getLogger(__name__)
GROUP = "analytics-grp"
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
        try:
            # Rebuild on every (re)start, from a fresh state: a batch folded but not yet
            # committed before a failure would otherwise be counted twice.
            if cfg.analytics_rebuild:
                self._rebuild(consumer)
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
                        for rec in records:
                            reason = fold_record(self.state, rec.topic, rec.partition, rec.value)
                            # OrderEvents poison goes to its DLQ from inventory-consumer; only
                            # InventoryEvents has no other reader to park it.
                            if reason and rec.topic == INVENTORY_EVENTS:
                                dlq.send(DLQ_FOR[rec.topic], key=rec.key, value=rec.value,
                                         headers=dead_letter_headers(reason, rec.topic, rec.partition, rec.offset))
                            n += 1
                        offsets[tp] = OffsetAndMetadata(records[-1].offset + 1, "", -1)
                    self.consumed_live += n
                    self._recent.append((time.time(), n))
                dlq.flush()
                # Commit after folding: a crash before this line refolds the batch on restart,
                # and the restart's rebuild reads only up to the committed offsets, so nothing doubles.
                consumer.commit(offsets, timeout_ms=cfg.kafka_timeout_ms * 3)
                watch.progressed(offsets)
        finally:
            consumer.close()
            dlq.close(timeout=5)

    def _rebuild(self, consumer) -> None:
        """Fold every record up to analytics-grp's committed offsets, so a restart loses no counts."""
        self.phase = "rebuilding"
        reader = kafka_clients.consumer(self.cfg, group_id=None, client_id="analytics-rebuild",
                                        max_poll_records=5000)
        try:
            tps = [TopicPartition(t, p) for t in TOPICS for p in (reader.partitions_for_topic(t) or ())]
            targets = {}
            for tp in tps:
                c = consumer.committed(tp)
                if c:
                    targets[tp] = c
            t0 = time.monotonic()
            state = MetricsState()
            n = read_into(reader, targets, state)
            with self.lock:
                self.state = state
                self.rebuilt_events = n
            log.info("analytics rebuilt events=%d in %.2fs", n, time.monotonic() - t0)
        finally:
            reader.close()


def read_into(reader, targets: dict[TopicPartition, int], state: MetricsState,
              timeout_s: float = 300.0) -> int:
    """Fold each partition of targets from its beginning up to (not including) its target offset."""
    if not targets:
        return 0
    reader.assign(list(targets))
    reader.seek_to_beginning(*targets)
    pending = {tp for tp, end in targets.items() if reader.position(tp) < end}
    n = 0
    deadline = time.monotonic() + timeout_s
    while pending:
        if time.monotonic() > deadline:
            raise TimeoutError(f"reading to the target offsets took over {timeout_s}s: {sorted(map(str, pending))}")
        for tp, records in reader.poll(timeout_ms=500).items():
            end = targets[tp]
            for rec in records:
                if rec.offset >= end:
                    break
                fold_record(state, rec.topic, rec.partition, rec.value)
                n += 1
        for tp in list(pending):
            if reader.position(tp) >= targets[tp]:
                pending.discard(tp)
                reader.pause(tp)
    return n
