"""The client a user might pick instead: confluent-kafka (librdkafka) doing the raw loops' work, for information.

A dev dependency only (requirements-dev.txt): the services use kafka-python, which the lab's
specification names and which is pure Python. These loops say what that choice costs.
"""
from __future__ import annotations

import json
import time

from kafka import TopicPartition

from services.common import events
from services.common.topics import ORDER_EVENTS
from services.producer.app import ORDER_LINGER_MS

try:
    import confluent_kafka
except ImportError:  # requirements.txt alone: the rows are skipped with this reason
    confluent_kafka = None

# A group id librdkafka insists on; the read loop assigns partitions and never commits, so it never joins.
READ_GROUP = "bench-confluent-read"


def unavailable(cfg) -> str | None:
    """Why the confluent-kafka rows cannot run here, or None."""
    if confluent_kafka is None:
        return "confluent-kafka is not installed (pip install -r requirements-dev.txt)"
    return None  # every connection setting of cfg has a librdkafka equivalent (settings())


def settings(cfg) -> dict:
    """librdkafka's spelling of the bootstrap and the connection (cfg.connection) the services use."""
    conn = cfg.connection
    out = {"bootstrap.servers": cfg.bootstrap}
    if conn.security_protocol != "PLAINTEXT":
        out["security.protocol"] = conn.security_protocol.lower()
    if conn.uses_sasl:
        out.update({"sasl.mechanism": conn.sasl_mechanism or "PLAIN", "sasl.username": conn.sasl_username,
                    "sasl.password": conn.sasl_password.reveal()})
    if conn.uses_tls:
        if conn.ssl_cafile:
            out["ssl.ca.location"] = conn.ssl_cafile
        if conn.ssl_certfile:
            out.update({"ssl.certificate.location": conn.ssl_certfile, "ssl.key.location": conn.ssl_keyfile})
    return out


def produce(cfg, n: int, topic: str = ORDER_EVENTS, timeout_s: float = 600) -> dict:
    """n mixed orders through a confluent-kafka producer: raw_produce's events and settings (acks=all, idempotent)."""
    acked = []
    p = confluent_kafka.Producer({**settings(cfg), "client.id": "bench-confluent", "acks": "all",
                                  "enable.idempotence": True, "linger.ms": ORDER_LINGER_MS,
                                  "batch.size": 64 * 1024})

    def delivered(err, _msg) -> None:
        if err is None:
            acked.append(1)
    p.list_topics(topic, timeout=30)  # metadata before the clock starts, as raw_produce's producer has it
    t0 = time.perf_counter()
    for ev in events.bulk_orders(n, events.MIXED):
        key, value = ev["order_id"].encode(), events.encode(ev)
        while True:
            try:
                p.produce(topic, value, key, on_delivery=delivered)
                break
            except BufferError:  # the local queue is full: serve deliveries, then try again
                p.poll(0.05)
    left = p.flush(timeout_s)
    seconds = time.perf_counter() - t0
    if left:
        raise TimeoutError(f"confluent-kafka left {left} records undelivered after {timeout_s}s")
    return {"acked": len(acked), "seconds": seconds, "events_per_s": len(acked) / seconds}


def read_decode(cfg, ends: dict[TopicPartition, int], timeout_s: float = 600) -> dict:
    """A confluent-kafka consumer reads every partition in ends from offset 0 and JSON-decodes each value."""
    ck = confluent_kafka
    t0 = time.perf_counter()
    c = ck.Consumer({**settings(cfg), "group.id": READ_GROUP, "client.id": "bench-confluent-read",
                     "enable.auto.commit": False, "isolation.level": "read_committed",
                     # Offset 0, not OFFSET_BEGINNING (which waits for an offset lookup); a log whose
                     # start has moved past 0 resets to its earliest offset.
                     "auto.offset.reset": "earliest"})
    n = 0
    try:
        c.assign([ck.TopicPartition(tp.topic, tp.partition, 0) for tp, end in ends.items() if end > 0])
        pending = {(tp.topic, tp.partition): end for tp, end in ends.items() if end > 0}
        deadline = time.monotonic() + timeout_s
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"confluent-kafka read did not reach the end offsets in {timeout_s}s")
            # consume() waits for all num_messages or the timeout: a short one, or the last call of
            # every read would wait it out (kafka-python's poll returns with what it has).
            for msg in c.consume(num_messages=10_000, timeout=0.05):
                if msg.error() is not None:
                    raise RuntimeError(f"confluent-kafka read: {msg.error()}")
                end = pending.get((msg.topic(), msg.partition()))
                if end is not None and msg.offset() < end:
                    json.loads(msg.value())
                    n += 1
            # The position counts transaction markers too, as kafka-python's does.
            for tp in c.position([ck.TopicPartition(t, p) for t, p in pending]):
                if tp.offset >= pending[(tp.topic, tp.partition)]:
                    del pending[(tp.topic, tp.partition)]
    finally:
        c.close()
    seconds = time.perf_counter() - t0
    return {"events": n, "seconds": seconds, "events_per_s": n / seconds}
