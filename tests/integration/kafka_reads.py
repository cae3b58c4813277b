"""Independent reads of the topics for assertions: plain kafka-python, none of the services' code paths."""
from __future__ import annotations

import json
import time

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition


def read_topic(bootstrap: str, topic: str, isolation: str = "read_committed", timeout_s: float = 60) -> list:
    """Every record of topic from offset 0 to its current end."""
    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                      isolation_level=isolation, client_id="test-reader")
    try:
        tps = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic))]
        c.assign(tps)
        c.seek_to_beginning()
        ends = c.end_offsets(tps)
        out = []
        deadline = time.monotonic() + timeout_s
        while any(c.position(tp) < ends[tp] for tp in tps):
            assert time.monotonic() < deadline, f"reading {topic} timed out"
            for recs in c.poll(timeout_ms=500).values():
                out.extend(r for r in recs if r.offset < ends[TopicPartition(r.topic, r.partition)])
        return out
    finally:
        c.close()


def values(records) -> list[dict]:
    return [json.loads(r.value) for r in records]


def end_offsets(bootstrap: str, topics, isolation: str = "read_uncommitted") -> dict:
    """The high watermarks; with read_committed, the last stable offsets (an open transaction holds them back)."""
    c = KafkaConsumer(bootstrap_servers=bootstrap, client_id="test-offsets", isolation_level=isolation)
    try:
        tps = [TopicPartition(t, p) for t in topics for p in sorted(c.partitions_for_topic(t))]
        return c.end_offsets(tps)
    finally:
        c.close()


def group_ids(bootstrap: str) -> set[str]:
    a = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="test-admin")
    try:
        return {g["group_id"] for g in a.list_groups()}
    finally:
        a.close()


def wait_for(predicate, timeout_s: float = 60, interval_s: float = 0.25, what: str = "condition"):
    """Poll predicate until it returns a truthy value; fail with what it last returned."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}; last value: {last!r}")
