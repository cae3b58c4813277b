"""The inventory worker: consume-transform-produce, exactly once (the default) or at least once.

PROCESSING_GUARANTEE=exactly_once, per poll batch: begin a transaction, write one InventoryEvents
record per order (or a dead letter) and one InventoryState snapshot per warehouse touched, add
the consumed offsets to the same transaction, commit. A crash anywhere aborts the open
transaction (the next init_transactions with our transactional_id fences it), so output,
snapshots and offsets move together. When a partition is assigned, its stock comes from its
latest committed snapshot, which therefore matches the committed offset; without one that
matches (a stack from before snapshots), from the warehouse's whole InventoryEvents history.

PROCESSING_GUARANTEE=at_least_once, per poll batch: the same records, sent without a transaction;
once the broker has acknowledged all of them, the consumed offsets are committed. A crash
between the two redelivers the batch, and its orders are reserved and written again. The stock
on assignment then always comes from the InventoryEvents history, which holds those first
reservations: nothing ties a snapshot to the committed offsets without a transaction, and the
point of the mode is to show the doubling, not to hide it. The domain logic (reserve,
inventory_event) is the same function in both modes.
"""
from __future__ import annotations

import logging
import threading
import time

from kafka import ConsumerRebalanceListener, KafkaConsumer, OffsetAndMetadata, TopicPartition
from kafka.errors import KafkaError

from services.common import events, kafka_clients, transactions
from services.common.config import EXACTLY_ONCE, Config
from services.common.dead_letters import dead_letter_headers
from services.common.events import DecodeError
from services.common.kafka_access import explain
from services.common.topics import (
    DLQ_FOR,
    INVENTORY_EVENTS,
    INVENTORY_GROUP,
    INVENTORY_STATE,
    ORDER_EVENTS,
    TRANSACTIONAL_ID_PREFIX,
)
from services.common.transactions import TransactionStuck, bounded
from services.common.watchdog import ConsumerStalled, StallWatch, group_lists
from services.inventory.stock import inventory_event, reserve, stock_from_events, stock_snapshot

log = logging.getLogger(__name__)
GROUP = INVENTORY_GROUP  # this worker's group
# transactional_id = prefix + INSTANCE_ID (a secured cluster grants inventory this prefix).
# Records per transaction when unthrottled: from MIN_BATCH, grown while there is a backlog.
MIN_BATCH = 500
MAX_BATCH = 5000
# A snapshot holds every item its warehouse has seen, and items are free-form (64 characters
# at most). Past this many (~330 KB of JSON) it is not written: it would approach the 1 MiB
# record limit, and a send that fails there would fail the same batch forever. The next owner
# then finds a snapshot behind the committed offset and reads the history instead.
MAX_SNAPSHOT_ITEMS = 4096
# A produce batch of the transactional producer: 1/4 of the broker's default record batch limit
# (message.max.bytes, 1 MiB).
TXN_BATCH_BYTES = 256 * 1024
# How long a new owner waits for a snapshot that is behind the committed offset: the commit
# markers of one transaction reach its partitions one by one.
SNAPSHOT_CATCH_UP_S = 5.0


def decoded(records, decode):
    """The decoded values of records; undecodable ones are skipped (they went to a DLQ when written)."""
    for rec in records:
        try:
            yield decode(rec.value)
        except DecodeError:
            continue


def last_snapshot(reader, tp: TopicPartition) -> dict | None:
    """The newest committed InventoryState record of tp, reading back from the end in growing steps."""
    hi = kafka_clients.end_offsets(reader, [tp])[tp]
    step = 16  # each transaction writes one snapshot and one marker: the last few offsets hold it
    while hi > 0:
        lo = max(0, hi - step)
        found = None
        for found in decoded(kafka_clients.read_range(reader, tp, lo, hi), events.decode_stock_snapshot):  # noqa: B007
            pass  # to the last one: the newest snapshot
        if found is not None:
            return found
        hi, step = lo, step * 8
    return None


class InventoryWorker:
    """One inventory-consumer instance; INSTANCE_ID makes its transactional_id stable across restarts."""

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.stop_event = threading.Event()
        self.stock: dict[int, dict[str, int]] = {}   # warehouse (partition) -> item -> units left
        # Assigned partitions whose stock is not loaded yet. The rebalance callback only notes
        # them: it runs on kafka-python's network thread, and a long read there blocks the
        # heartbeats until the session times out (seen at ~2.5M events: an endless rejoin loop).
        self.unbuilt: set[TopicPartition] = set()
        self.processed = 0
        self.dead_letters = 0
        self.transactional_id = f"{TRANSACTIONAL_ID_PREFIX}{cfg.instance_id}"
        self.transactional = cfg.processing_guarantee == EXACTLY_ONCE
        # A transaction spans at most COMMIT_INTERVAL_MS of work, so lag moves smoothly
        # even when THROTTLE_MS slows every event down. Unthrottled, the batch adapts (see
        # process) from MIN_BATCH up to as many records as fit in that interval.
        per_event = max(cfg.throttle_ms, 0)
        self.batch = max(1, cfg.commit_interval_ms // per_event) if per_event else MIN_BATCH
        # Past this, a transactional call is taken as stuck and the incarnation starts over. A
        # call takes milliseconds, or rides out a leader's failover (KRaft fences a killed broker
        # after broker.session.timeout.ms, 9 s by default, then elects): 15 s covers that. What
        # it must not wait for is a dead transaction coordinator: kafka-python 3.0.12 keeps
        # retrying the node it knew and never finds the new one, while a fresh incarnation does.
        self.txn_timeout_s = max(15.0, cfg.kafka_timeout_ms * 3 / 1000)

    def run(self) -> None:
        """Process until stop_event; after any failure, start over with fresh clients."""
        last = None
        while not self.stop_event.is_set():
            processed = self.processed
            try:
                self.run_once()
            except (TransactionStuck, ConsumerStalled, KafkaError) as exc:
                # A fault of the cluster (a broker gone, a coordinator moving) or of the connection
                # (TLS, login, an ACL): one line, not a traceback, and not again while it stays the same.
                message = explain(exc, self.cfg) if isinstance(exc, KafkaError) else f"{exc.__class__.__name__}: {exc}"
                if self.processed > processed:
                    last = None     # it recovered in between: the same failure again is news
                (log.warning if message != last else log.debug)(
                    "inventory-consumer: %s; starting over with fresh clients in 2s", message)
                last = message
                self.stop_event.wait(2)
            except Exception:  # noqa: BLE001 - logged; a new incarnation recovers from Kafka's state
                log.exception("inventory-consumer failed; starting over in 2s")
                self.stop_event.wait(2)

    def run_once(self) -> None:
        cfg = self.cfg
        # Everything below is rebuilt from Kafka: the stock on assignment, the position from
        # the committed offsets. Nothing from a failed incarnation is trusted.
        self.stock = {}
        self.unbuilt = set()
        # Nobody reads a transaction's records before its commit, and the commit flushes
        # them: lingering until then fills each produce request (docs/tuning.md).
        # Throttled (the lab's slow consumer) a batch is COMMIT_INTERVAL_MS of sleeps, and its
        # records go out as they are made: a crash mid-batch then leaves them in the log,
        # aborted (exactly_once) or for good (at_least_once), as in a real slow transaction.
        # Both modes use the same settings, so their throughput differs by the guarantee alone.
        linger_ms = 5 if cfg.throttle_ms else max(cfg.commit_interval_ms, 5)
        self.producer = kafka_clients.producer(cfg, transactional_id=self.transactional_id,
                                               client_id=self.transactional_id,
                                               linger_ms=linger_ms, batch_size=TXN_BATCH_BYTES)
        self.consumer: KafkaConsumer | None = None
        self.reader: KafkaConsumer | None = None
        try:
            # Fences any earlier incarnation with our id and aborts its open transaction; in
            # at_least_once too, so a transaction an exactly-once predecessor left open cannot
            # hold back every read_committed reader after a switch of modes.
            self.producer.init_transactions()
            self.abort_lost_transactions()
            if not self.transactional:
                self.producer.close(timeout=5)
                # Not transactional: flushed before each commit (process), so the linger never delays one.
                self.producer = kafka_clients.producer(cfg, client_id=self.transactional_id,
                                                       linger_ms=linger_ms, batch_size=TXN_BATCH_BYTES)
            self.consumer = kafka_clients.consumer(cfg, group_id=GROUP, client_id=self.transactional_id,
                                                   max_poll_records=self.batch, **kafka_clients.STREAM_FETCH)
            self.reader = kafka_clients.consumer(cfg, group_id=None, client_id=self.transactional_id + "-rebuild")
            # The topic's metadata before joining: a group leader without it assigns nothing (kafka-python's
            # range assignor: "No partition metadata"), and the group idles until the watchdog restarts it.
            self.consumer.partitions_for_topic(ORDER_EVENTS)
            self.consumer.subscribe([ORDER_EVENTS], listener=_Rebalance(self))
            log.info("inventory-consumer started id=%s processing_guarantee=%s throttle_ms=%d batch=%d",
                     self.transactional_id, cfg.processing_guarantee, cfg.throttle_ms, self.batch)
            last_log = time.monotonic()
            watch = StallWatch(self.consumer, in_group=group_lists(cfg, GROUP, self.consumer))
            while not self.stop_event.is_set():
                batch = self.consumer.poll(timeout_ms=200, max_records=self.batch)
                if self.unbuilt:
                    self.rebuild()
                    watch.progressed()  # the stall window counts from here, not from the rebuild's start
                if batch:
                    watch.progressed(self.process(batch))
                else:
                    watch.check()
                if time.monotonic() - last_log > 10:
                    last_log = time.monotonic()
                    log.info("progress processed=%d dead_letters=%d partitions=%s",
                             self.processed, self.dead_letters, sorted(self.stock))
        finally:
            for client in (self.consumer, self.reader):
                if client is not None:
                    client.close()
            self.producer.close(timeout=5)
            log.info("inventory-consumer stopped processed=%d", self.processed)

    def abort_lost_transactions(self) -> None:
        """Abort what an earlier incarnation left open when Kafka lost its markers (services/common/transactions.py)."""
        admin = None
        try:
            admin = kafka_clients.admin(self.cfg, client_id=self.transactional_id + "-admin")
            transactions.abort_fenced_transactions(admin, self.transactional_id,
                                                   [INVENTORY_EVENTS, INVENTORY_STATE, DLQ_FOR[ORDER_EVENTS]])
        except KafkaError as exc:
            # Best effort: a cluster that refuses DescribeProducers (ACLs, an old broker)
            # still runs the pipeline; only the rare lost-marker case then needs an operator.
            log.warning("could not check for transactions with lost markers: %r", exc)
        finally:
            if admin is not None:
                admin.close()

    def _group(self) -> KafkaConsumer:
        """The running incarnation's group consumer: run_once makes it before the first batch."""
        if self.consumer is None:
            raise RuntimeError("inventory-consumer has no group consumer outside run_once")
        return self.consumer

    def rebuild(self) -> None:
        """Load the stock of each newly assigned warehouse: its snapshot, or its whole history."""
        for tp in sorted(self.unbuilt):
            t0 = time.monotonic()
            committed = self._group().committed(tp, timeout_ms=self.cfg.kafka_timeout_ms * 2) or 0
            state_tp = TopicPartition(INVENTORY_STATE, tp.partition)
            # at_least_once: the history, always (see the module's docstring).
            snap = last_snapshot(self.reader, state_tp) if self.transactional else None
            deadline = time.monotonic() + SNAPSHOT_CATCH_UP_S
            while (snap is not None and snap["orders_offset"] < committed
                   and time.monotonic() < deadline and not self.stop_event.is_set()):
                time.sleep(0.1)
                snap = last_snapshot(self.reader, state_tp)
            if snap is not None and snap["orders_offset"] == committed:
                stock, source = snap["stock"], "snapshot"
            else:
                # No snapshot yet, or one from another offset (written by a version without
                # snapshots, skipped as too large, or the group's offsets were reset): the
                # full history.
                if snap is not None:
                    log.warning("snapshot of warehouse %d is at offset %d, inventory-grp at %d: "
                                "reading its history instead", tp.partition, snap["orders_offset"], committed)
                history = kafka_clients.read_range(self.reader, TopicPartition(INVENTORY_EVENTS, tp.partition))
                stock, source = stock_from_events(decoded(history, events.decode_inventory)), "InventoryEvents"
            self.stock[tp.partition] = stock
            self.unbuilt.discard(tp)
            log.info("stock loaded warehouse=%d items=%d from=%s orders_offset=%d in %.2fs", tp.partition,
                     len(stock), source, committed, time.monotonic() - t0)

    def process(self, batch) -> dict[TopicPartition, OffsetAndMetadata]:
        """Process one poll batch, in one transaction or (at_least_once) acked, then committed; return the offsets."""
        prod, cfg = self.producer, self.cfg
        offsets: dict[TopicPartition, OffsetAndMetadata] = {}
        sent = []
        n = dead = 0
        t0 = time.monotonic()
        if self.transactional:
            prod.begin_transaction()
        try:
            for tp, records in batch.items():
                stock = self.stock[tp.partition]  # loaded by rebuild() before any batch of tp
                for rec in records:
                    if cfg.throttle_ms:
                        time.sleep(cfg.throttle_ms / 1000)
                    try:
                        order = events.decode_order(rec.value)
                    except DecodeError as exc:
                        sent.append(prod.send(DLQ_FOR[ORDER_EVENTS], key=rec.key, value=rec.value,
                                              headers=dead_letter_headers(str(exc), rec.topic, rec.partition,
                                                                          rec.offset)))
                        log.warning("dead letter topic=%s partition=%d offset=%d error=%s",
                                    rec.topic, rec.partition, rec.offset, exc)
                        dead += 1
                    else:
                        status, left = reserve(stock, order["item"], order["qty"], cfg.initial_stock)
                        out = inventory_event(order, tp.partition, status, left, events.now_ms())
                        # Same partition number as the order: warehouse p's history lives in partition p.
                        sent.append(prod.send(INVENTORY_EVENTS, key=order["order_id"].encode(),
                                              value=events.encode(out), partition=tp.partition))
                    n += 1
                offsets[tp] = OffsetAndMetadata(records[-1].offset + 1, "", -1)
                # The warehouse's whole stock as of this transaction: what the next owner of
                # the partition starts from.
                if len(stock) <= MAX_SNAPSHOT_ITEMS:
                    snapshot = stock_snapshot(tp.partition, stock, offsets[tp].offset)
                    sent.append(prod.send(INVENTORY_STATE, key=str(tp.partition).encode(),
                                          value=events.encode(snapshot), partition=tp.partition))
            if self.transactional:
                group = self._group().group_metadata()
                bounded(lambda: prod.send_offsets_to_transaction(offsets, group), self.txn_timeout_s, "send_offsets")
                bounded(prod.commit_transaction, self.txn_timeout_s, "commit_transaction")
            else:
                # at_least_once: commit only what the broker holds. A crash after the flush and
                # before the commit is the redelivery this mode accepts.
                # Past the delivery timeout every send has completed, acknowledged or failed.
                prod.flush(timeout=cfg.delivery_timeout_ms / 1000 + 5)
                failed = next((f.exception for f in sent if f.failed()), None)
                if failed is not None:
                    raise failed
                self._group().commit(offsets)
        except Exception as exc:
            # kafka-python cannot reset a transactional producer after a failed send (it says
            # so: abort and close it), and its waits have no timeout. So on any failure this
            # incarnation ends: run() starts a new one, whose init_transactions fences this
            # producer and aborts the open transaction; stock and positions come back from Kafka.
            log.warning("%s failed; starting over from Kafka's state: %r",
                        "transaction" if self.transactional else "batch", exc)
            raise
        self.processed += n - dead
        self.dead_letters += dead
        if not cfg.throttle_ms and n >= self.batch:
            # A full poll means a backlog. Each commit costs several round trips (~25 ms,
            # bench), so 500-record transactions spent half their time committing: size the
            # next one to fill COMMIT_INTERVAL_MS at the rate this one achieved.
            per_record = (time.monotonic() - t0) / n
            self.batch = max(MIN_BATCH, min(MAX_BATCH, int(cfg.commit_interval_ms / 1000 / per_record)))
        return offsets


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, worker: InventoryWorker):
        self.worker = worker

    def on_partitions_revoked(self, revoked):
        # No transaction is open here: each one ends before the next poll().
        for tp in revoked:
            self.worker.stock.pop(tp.partition, None)
            self.worker.unbuilt.discard(tp)
        log.info("partitions revoked %s", sorted(tp.partition for tp in revoked))

    def on_partitions_assigned(self, assigned):
        log.info("partitions assigned %s", sorted(tp.partition for tp in assigned))
        self.worker.unbuilt.update(assigned)
