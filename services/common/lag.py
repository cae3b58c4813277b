"""Consumer-group lag per partition, in offsets and in seconds, read from the broker."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass

from kafka import IsolationLevel, OffsetSpec, TopicPartition


class LagUnavailable(RuntimeError):
    """The broker could not answer a lag read; the message names why."""


@dataclass(frozen=True)
class PartitionLag:
    group: str
    topic: str
    partition: int
    end_offset: int            # last stable offset: what a read_committed consumer can reach
    committed: int | None      # None: the group has committed nothing here yet
    lag: int                   # data records not yet processed (transaction markers excluded)
    lag_seconds: float | None  # age of the oldest unprocessed record; 0 when caught up

    def as_dict(self) -> dict:
        return asdict(self)


def end_offsets(admin, tps) -> dict[TopicPartition, int]:
    specs = {tp: OffsetSpec.LATEST for tp in tps}
    res = admin.list_partition_offsets(specs, isolation_level=IsolationLevel.READ_COMMITTED)
    return {tp: r.offset for tp, r in res.items()}


def start_offsets(admin, tps) -> dict[TopicPartition, int]:
    res = admin.list_partition_offsets({tp: OffsetSpec.EARLIEST for tp in tps})
    return {tp: r.offset for tp, r in res.items()}


def partitions_of(admin, topics) -> list[TopicPartition]:
    return [TopicPartition(d["name"], p["partition_index"])
            for d in admin.describe_topics(list(topics)) for p in d["partitions"]]


def group_lag(admin, group: str, topics, peek_consumer=None, now_ms: int | None = None) -> list[PartitionLag]:
    """Lag of group on every partition of topics.

    Offsets alone overstate lag on transactional topics: a commit marker takes an offset
    that no consumer ever processes. With a peek_consumer (assign-mode, read_committed),
    the first data record at or after the committed offset is read: if none exists the
    gap is only markers (lag 0); if one does, its timestamp gives the lag in seconds.
    """
    tps = partitions_of(admin, topics)
    committed = admin.list_group_offsets({group: tps}).get(group, {})
    ends = end_offsets(admin, tps)
    starts = start_offsets(admin, tps)
    rows: dict[TopicPartition, dict] = {}
    for tp in tps:
        c = committed.get(tp)
        pos = c.offset if c is not None and c.offset >= 0 else None
        from_ = pos if pos is not None else starts[tp]
        rows[tp] = {"committed": pos, "from": from_, "end": ends[tp]}
    lagging = [tp for tp, r in rows.items() if r["end"] > r["from"]]
    first = (peek_first_records(peek_consumer, {tp: rows[tp]["from"] for tp in lagging}, ends)
             if peek_consumer else {})
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    out = []
    for tp, r in sorted(rows.items(), key=lambda kv: (kv[0].topic, kv[0].partition)):
        lag = max(0, r["end"] - r["from"])
        secs: float | None = 0.0 if lag == 0 else None
        if tp in lagging and peek_consumer is not None and tp in first:
            rec = first[tp]
            if rec is None:
                lag, secs = 0, 0.0  # only markers or aborted records left
            else:
                lag = max(0, r["end"] - rec[0])
                secs = max(0.0, (now - rec[1]) / 1000)
        # A partition the peek did not settle in time keeps its offset lag, its age unknown (None).
        out.append(PartitionLag(group, tp.topic, tp.partition, r["end"], r["committed"], lag, secs))
    return out


def peek_first_records(consumer, positions: dict[TopicPartition, int], ends: dict[TopicPartition, int],
                       timeout_s: float = 2.0) -> dict:
    """{tp: (offset, timestamp_ms)} of the first committed data record at or after each position.

    {tp: None} means the position reached the end with no data record: only transaction
    markers (or aborted records) are left. A partition missing from the answer was not
    settled within timeout_s, so nothing is known about it.
    """
    if not positions:
        return {}
    consumer.assign(list(positions))
    for tp, off in positions.items():
        consumer.seek(tp, off)
    found: dict = {}
    deadline = time.monotonic() + timeout_s
    pending = set(positions)
    # No pause()/resume() of settled partitions: in kafka-python 3.0.12 a partition paused
    # with a fetch in flight and then seeked back is never fetched again by this consumer,
    # so every later peek timed out on it. Their extra records are simply ignored.
    while pending and time.monotonic() < deadline:
        # Short polls: a partition holding only markers yields no record, so a long poll
        # would always run out its whole timeout before the position check below.
        for tp, recs in consumer.poll(timeout_ms=20).items():
            if tp in pending and recs:
                found[tp] = (recs[0].offset, recs[0].timestamp)
                pending.discard(tp)
        # A partition whose position reached the end without a record holds only markers.
        for tp in list(pending):
            if consumer.position(tp) >= ends[tp]:
                found[tp] = None
                pending.discard(tp)
    return found
