"""analytics-consumer's snapshots: its folded MetricsState and the input offsets it covers, in AnalyticsState.

A snapshot is one record (key ``analytics-consumer``, the topic's one partition) holding the
whole MetricsState and, per partition of OrderEvents and InventoryEvents, the offset up to
which (exclusive) the state has folded the records. The two are only ever taken together, in
the consumer thread, between batches: the state is exactly the fold of every record below
those offsets. That makes the pair a valid starting point at any later time, so a restart
loads the newest one it can trust, seeks there and folds only what came after.

Trust (``check_trusted``): the record must be ours (``kind``), of this SCHEMA_VERSION (the
layout and the fold's meaning; a snapshot of another version is ignored, with its reason
logged, and the start falls back to an older snapshot or the whole history), and its offsets
must still describe the same logs: the same topic ids and partition counts, and every offset
within the partition's current log start and end. A topic deleted and recreated, a log
truncated, or a retention that deleted records the snapshot had not folded yet, each make the
fold from there wrong, so such a snapshot is skipped.

Size: the state grows with the distinct items (free-form names) and latency values seen.
Nothing in the fold is capped, so /metrics stays exact; what is capped is the snapshot. A
record over MAX_SNAPSHOT_BYTES is not written (the broker's record limit is 1 MiB, and a
send that fails there fails again every time); the restart then starts from the newest
snapshot that fitted, or the history, and folds more. Exact either way, slower past the cap.
"""
from __future__ import annotations

import itertools
import json
import logging
import time
from collections import Counter
from dataclasses import dataclass, fields

from kafka import KafkaProducer, TopicPartition
from kafka.errors import IllegalStateError

from services.analytics.metrics import MetricsState
from services.common import kafka_clients
from services.common.config import Config
from services.common.events import encode
from services.common.topics import ANALYTICS_STATE, INVENTORY_EVENTS, ORDER_EVENTS

log = logging.getLogger(__name__)

# Bump when MetricsState, the fold or this layout changes: an older snapshot then folds
# differently from what this version would, and is ignored.
SCHEMA_VERSION = 1
KIND = "analytics-state"
KEY = b"analytics-consumer"
INPUTS = (ORDER_EVENTS, INVENTORY_EVENTS)
# Below the 1 MiB default of the broker's message.max.bytes and of the producer's max_request_size.
MAX_SNAPSHOT_BYTES = 768 * 1024


class SnapshotRejected(ValueError):
    """A record of AnalyticsState that cannot serve as a starting point; the message says why."""


@dataclass(frozen=True)
class Snapshot:
    state: MetricsState
    offsets: dict[TopicPartition, int]   # every input partition: the fold covers offsets below this
    topic_ids: dict[str, str | None]     # topic -> id when it was written (None: the client did not know)
    written_ms: int

    def describe(self) -> dict:
        """The JSON view for /metrics: when it was written and where each partition resumed."""
        return {"written_ms": self.written_ms,
                "offsets": {f"{tp.topic}-{tp.partition}": o for tp, o in sorted(self.offsets.items())}}


def _state_doc(state: MetricsState) -> dict:
    # JSON keys are strings: the maps keyed by ints or pairs become lists of rows.
    return {
        "orders_total": state.orders_total,
        "inventory_events_total": state.inventory_events_total,
        "qty_total": state.qty_total,
        "orders_by_item": dict(state.orders_by_item),
        "qty_by_item": dict(state.qty_by_item),
        "reserved": state.reserved,
        "rejected": state.rejected,
        "reserved_qty_by_item": dict(state.reserved_qty_by_item),
        "stock": [[w, item, left] for (w, item), left in state.stock.items()],
        "events_by_partition": {t: [[p, n] for p, n in c.items()] for t, c in state.events_by_partition.items()},
        "latency_ms": [[ms, n] for ms, n in state.latency_ms.items()],
        "dead_letters": dict(state.dead_letters),
        "first_created_ms": state.first_created_ms,
        "last_created_ms": state.last_created_ms,
    }


def encode_snapshot(state: MetricsState, offsets: dict[TopicPartition, int],
                    topic_ids: dict[str, str | None], written_ms: int) -> bytes:
    """The AnalyticsState record value of state and the input offsets it covers."""
    by_topic: dict[str, dict[str, int]] = {t: {} for t in INPUTS}
    for tp, offset in sorted(offsets.items()):
        by_topic[tp.topic][str(tp.partition)] = offset
    return encode({"schema": SCHEMA_VERSION, "kind": KIND, "written_ms": written_ms,
                   "topic_ids": {t: topic_ids.get(t) for t in INPUTS}, "offsets": by_topic,
                   "state": _state_doc(state)})


def _int(x, what: str, minimum: int | None = 0) -> int:
    if type(x) is not int or (minimum is not None and x < minimum):
        raise SnapshotRejected(f"{what}: {x!r} is not an integer{'' if minimum is None else f' >= {minimum}'}")
    return x


def _counter(doc, what: str, key=lambda k: k) -> Counter:
    if type(doc) is not dict:
        raise SnapshotRejected(f"{what}: not an object")
    return Counter({key(k): _int(v, f"{what}.{k}", 1) for k, v in doc.items()})


def _rows(doc, what: str, width: int) -> list:
    if type(doc) is not list or any(type(r) is not list or len(r) != width for r in doc):
        raise SnapshotRejected(f"{what}: not a list of {width}-element rows")
    return doc


def _state(doc) -> MetricsState:
    if type(doc) is not dict:
        raise SnapshotRejected("state: not an object")
    expected = {f.name for f in fields(MetricsState)}
    if set(doc) != expected:
        raise SnapshotRejected(f"state: fields {sorted(set(doc) ^ expected)} differ from this version's")
    s = MetricsState()
    for name in ("orders_total", "inventory_events_total", "qty_total", "reserved", "rejected"):
        setattr(s, name, _int(doc[name], f"state.{name}"))
    for name in ("orders_by_item", "qty_by_item", "reserved_qty_by_item", "dead_letters"):
        setattr(s, name, _counter(doc[name], f"state.{name}"))
    for w, item, left in _rows(doc["stock"], "state.stock", 3):
        if type(item) is not str:
            raise SnapshotRejected(f"state.stock: item {item!r} is not a string")
        s.stock[(_int(w, "state.stock warehouse"), item)] = _int(left, "state.stock left", None)
    eb = doc["events_by_partition"]
    if type(eb) is not dict or set(eb) != set(INPUTS):
        raise SnapshotRejected(f"state.events_by_partition: not one entry per topic of {list(INPUTS)}")
    s.events_by_partition = {t: Counter({_int(p, f"{t} partition"): _int(n, f"{t} count", 1)
                                         for p, n in _rows(eb[t], f"state.events_by_partition.{t}", 2)})
                             for t in INPUTS}
    s.latency_ms = Counter({_int(ms, "state.latency_ms"): _int(n, "state.latency_ms count", 1)
                            for ms, n in _rows(doc["latency_ms"], "state.latency_ms", 2)})
    for name in ("first_created_ms", "last_created_ms"):
        if doc[name] is not None:
            setattr(s, name, _int(doc[name], f"state.{name}"))
    return s


def decode_snapshot(raw: bytes | None) -> Snapshot:
    """Parse and check an AnalyticsState record value, or raise SnapshotRejected with the reason."""
    if raw is None:
        raise SnapshotRejected("empty record (null value)")
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise SnapshotRejected(f"not JSON: {exc}") from None
    if type(doc) is not dict or doc.get("kind") != KIND:
        raise SnapshotRejected(f"not an analytics snapshot (kind {doc.get('kind') if type(doc) is dict else None!r})")
    if doc.get("schema") != SCHEMA_VERSION:
        raise SnapshotRejected(f"schema {doc.get('schema')!r}, this version reads {SCHEMA_VERSION}")
    offsets_doc, ids = doc.get("offsets"), doc.get("topic_ids")
    if (type(offsets_doc) is not dict or set(offsets_doc) != set(INPUTS)
            or any(type(v) is not dict for v in offsets_doc.values())):
        raise SnapshotRejected(f"offsets: not one object per topic of {list(INPUTS)}")
    if type(ids) is not dict or any(v is not None and type(v) is not str for v in ids.values()):
        raise SnapshotRejected("topic_ids: not an object of strings")
    offsets = {}
    for topic, parts in offsets_doc.items():
        for p, offset in parts.items():
            if not p.isdigit():
                raise SnapshotRejected(f"offsets.{topic}: partition {p!r}")
            offsets[TopicPartition(topic, int(p))] = _int(offset, f"offsets.{topic}.{p}")
    return Snapshot(state=_state(doc.get("state")), offsets=offsets,
                    topic_ids={t: ids.get(t) for t in INPUTS}, written_ms=_int(doc.get("written_ms"), "written_ms"))


def check_trusted(snap: Snapshot, topic_ids: dict[str, str | None], starts: dict[TopicPartition, int],
                  ends: dict[TopicPartition, int]) -> None:
    """Raise SnapshotRejected unless snap's offsets still describe these logs.

    starts/ends: every input partition's offsets now.
    """
    for topic in INPUTS:
        then, now = snap.topic_ids.get(topic), topic_ids.get(topic)
        if then and now and then != now:
            raise SnapshotRejected(f"{topic} was recreated (topic id {then}, now {now})")
        had = sorted(tp.partition for tp in snap.offsets if tp.topic == topic)
        has = sorted(tp.partition for tp in starts if tp.topic == topic)
        if had != has:
            raise SnapshotRejected(f"{topic} had partitions {had}, has {has}")
    for tp, offset in sorted(snap.offsets.items()):
        if not starts[tp] <= offset <= ends[tp]:
            raise SnapshotRejected(f"{tp.topic}-{tp.partition} at offset {offset}, outside the log's "
                                   f"{starts[tp]}..{ends[tp]}")


class SnapshotStore:
    """The Kafka side: writes snapshots to AnalyticsState and finds the newest trusted one."""

    # Records looked at, newest first, before a start gives up and folds the whole history.
    MAX_CANDIDATES = 32

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.every_s = cfg.analytics_snapshot_every_s
        self._producer: KafkaProducer | None = None
        self._next_at = time.monotonic() + self.every_s
        self.written = 0
        self.skipped_too_large = 0
        self.last_written: dict | None = None

    def due(self) -> bool:
        return time.monotonic() >= self._next_at

    def write(self, state: MetricsState, offsets: dict[TopicPartition, int], topic_ids: dict[str, str | None]) -> bool:
        """Write one snapshot and wait for its acknowledgement; False when it is over the size cap."""
        self._next_at = time.monotonic() + self.every_s
        written_ms = int(time.time() * 1000)
        value = encode_snapshot(state, offsets, topic_ids, written_ms)
        if len(value) > MAX_SNAPSHOT_BYTES:
            self.skipped_too_large += 1
            log.warning("analytics snapshot not written: %d bytes, over the cap of %d; a restart starts from "
                        "an older snapshot or the history", len(value), MAX_SNAPSHOT_BYTES)
            return False
        try:
            self._send(value)
        except IllegalStateError:
            # kafka-python closes every producer in an atexit handler of its own, and that one
            # runs before the handler that stops analytics (atexit is last in, first out): the
            # snapshot of a clean stop needs a producer made after it.
            self._producer = None
            self._send(value)
        self.written += 1
        self.last_written = {"written_ms": written_ms, "bytes": len(value)}
        log.info("analytics snapshot written bytes=%d offsets=%s", len(value),
                 ",".join(f"{tp.topic}-{tp.partition}:{o}" for tp, o in sorted(offsets.items())))
        return True

    def _send(self, value: bytes) -> None:
        if self._producer is None:
            self._producer = kafka_clients.producer(self.cfg, client_id="analytics-snapshot", linger_ms=0)
        self._producer.send(ANALYTICS_STATE, key=KEY, value=value, partition=0).get(
            timeout=self.cfg.kafka_timeout_ms * 3 / 1000)

    def newest_trusted(self, reader, topic_ids: dict[str, str | None], starts: dict[TopicPartition, int],
                       ends: dict[TopicPartition, int]) -> tuple[Snapshot | None, list[str]]:
        """The newest snapshot that check_trusted accepts, and why each newer record was ignored."""
        rejected: list[str] = []
        records = kafka_clients.read_back(reader, TopicPartition(ANALYTICS_STATE, 0))
        for rec in itertools.islice(records, self.MAX_CANDIDATES):
            try:
                snap = decode_snapshot(rec.value)
                check_trusted(snap, topic_ids, starts, ends)
                return snap, rejected
            except SnapshotRejected as exc:
                reason = f"offset {rec.offset}: {exc}"
                log.warning("AnalyticsState record ignored, %s", reason)
                rejected.append(reason)
        return None, rejected

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close(timeout=5)
            self._producer = None

    def describe(self) -> dict:
        return {"every_s": self.every_s, "written": self.written, "skipped_too_large": self.skipped_too_large,
                "last_written": self.last_written}
