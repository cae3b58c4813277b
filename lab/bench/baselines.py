"""The same work without the services: raw kafka-python loops, and Kafka's own Java ProducerPerformance."""
from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

from kafka import KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata

from lab import paths
from lab.bench.harness import PERF_TOPIC, RAW_GROUP, RAW_OUT_TOPIC
from services.common import events, kafka_clients
from services.common.topics import ORDER_EVENTS
from services.producer.app import ORDER_LINGER_MS


def raw_produce(producer, n: int, topic: str = ORDER_EVENTS, timeout_s: float = 600) -> dict:
    """n mixed orders through a plain producer loop: the same events, serializer and settings as the service."""
    t0 = time.perf_counter()
    futures = [producer.send(topic, key=ev["order_id"].encode(), value=events.encode(ev))
               for ev in events.bulk_orders(n, events.MIXED)]
    producer.flush(timeout=timeout_s)
    seconds = time.perf_counter() - t0
    acked = sum(1 for f in futures if f.succeeded())
    return {"acked": acked, "seconds": seconds, "events_per_s": acked / seconds}


def raw_read_decode(cfg, ends: dict[TopicPartition, int], timeout_s: float = 600) -> dict:
    """A plain consumer reads every partition in ends from offset 0 and JSON-decodes each value."""
    t0 = time.perf_counter()
    c = KafkaConsumer(bootstrap_servers=cfg.bootstrap, group_id=None, enable_auto_commit=False,
                      isolation_level="read_committed", client_id="bench-raw-read",
                      **cfg.connection.client_options())
    n = 0
    try:
        c.assign(list(ends))
        c.seek_to_beginning()
        pending = {tp for tp, end in ends.items() if end > 0}
        deadline = time.monotonic() + timeout_s
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"raw read did not reach the end offsets in {timeout_s}s")
            for tp, recs in c.poll(timeout_ms=500).items():
                end = ends[tp]
                for rec in recs:
                    if rec.offset >= end:
                        break
                    json.loads(rec.value)
                    n += 1
            pending = {tp for tp in pending if c.position(tp) < ends[tp]}
    finally:
        c.close()
    seconds = time.perf_counter() - t0
    return {"events": n, "seconds": seconds, "events_per_s": n / seconds}


def raw_consume_produce(cfg, ranges: dict[TopicPartition, tuple[int, int]], *, transactional: bool,
                        timeout_s: float = 600) -> dict:
    """Orders in ranges -> one output record each, with a plain consumer and producer, 500 records a batch.

    Plain: send the batch, flush, commit the offsets (at-least-once). Transactional: the
    batch and its offsets in one transaction, as inventory-consumer does (exactly-once).
    Timed like inventory-consumer: from the first committed batch to the last one.
    """
    tid = "bench-raw-eos" if transactional else None
    producer = kafka_clients.producer(cfg, transactional_id=tid, client_id="bench-raw-cp")
    consumer = KafkaConsumer(bootstrap_servers=cfg.bootstrap, group_id=RAW_GROUP, enable_auto_commit=False,
                             isolation_level="read_committed", client_id="bench-raw-cp", max_poll_records=500,
                             **cfg.connection.client_options())
    try:
        if transactional:
            producer.init_transactions()
        consumer.assign(list(ranges))
        for tp, (start, _) in ranges.items():
            consumer.seek(tp, start)
        producer.partitions_for(RAW_OUT_TOPIC)  # metadata before the clock starts
        total = sum(end - start for start, end in ranges.values())
        done = 0
        t_first = n_first = None
        t_loop = time.perf_counter()
        deadline = time.monotonic() + timeout_s
        while done < total:
            if time.monotonic() > deadline:
                raise TimeoutError(f"raw consume-produce did {done}/{total} in {timeout_s}s")
            batch = consumer.poll(timeout_ms=200, max_records=500)
            if not batch:
                continue
            if transactional:
                producer.begin_transaction()
            offsets = {}
            for tp, recs in batch.items():
                end = ranges[tp][1]
                for rec in recs:
                    if rec.offset >= end:
                        break
                    order = json.loads(rec.value)
                    out = {"order_id": order["order_id"], "item": order["item"], "qty": order["qty"],
                           "status": "reserved", "stock_left": 0, "warehouse": tp.partition,
                           "order_created_ms": order["created_ms"], "processed_ms": events.now_ms()}
                    producer.send(RAW_OUT_TOPIC, key=rec.key, value=events.encode(out), partition=tp.partition)
                    offsets[tp] = OffsetAndMetadata(rec.offset + 1, "", -1)
                    done += 1
            if transactional:
                producer.send_offsets_to_transaction(offsets, consumer.group_metadata())
                producer.commit_transaction()
            else:
                producer.flush()
                consumer.commit(offsets)
            if t_first is None:
                t_first, n_first = time.perf_counter(), done
        t_end = time.perf_counter()
    finally:
        consumer.close()
        producer.close(timeout=5)
    if n_first < total:
        seconds, timed, timed_from = t_end - t_first, total - n_first, "first commit"
    else:  # one batch held everything: time it whole
        seconds, timed, timed_from = t_end - t_loop, total, "loop start"
    return {"events": total, "timed_events": timed, "seconds": seconds, "events_per_s": timed / seconds,
            "timed_from": timed_from}


def raw_order_client(producer):
    """What POST /order does at its core, without HTTP: one order, send, wait for its ack (the shared producer)."""
    def call() -> bool:
        ev = events.new_order("pizza", 1)
        fut = producer.send(ORDER_EVENTS, key=ev["order_id"].encode(), value=events.encode(ev))
        fut.get(timeout=30)
        return fut.succeeded()
    return call, lambda: None


def producer_performance(bootstrap: str, records: int, record_size: int, log_file: Path,
                         topic: str = PERF_TOPIC) -> dict:
    """org.apache.kafka.tools.ProducerPerformance with the service's producer settings."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    cmd = ["java", "-Xmx256m", "-cp", f"{paths.JARS_DIR}/*",
           f"-Dlog4j2.configurationFile={paths.KAFKA_DIR / 'log4j2.properties'}", f"-Dkafka.logs.file={log_file}",
           "org.apache.kafka.tools.ProducerPerformance", "--topic", topic,
           "--num-records", str(records), "--record-size", str(record_size), "--throughput", "-1",
           "--producer-props", f"bootstrap.servers={bootstrap}", "acks=all", "enable.idempotence=true",
           f"linger.ms={ORDER_LINGER_MS}", f"batch.size={64 * 1024}"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    m = re.search(r"(\d+) records sent, ([\d.]+) records/sec \(([\d.]+) MB/sec\), ([\d.]+) ms avg latency, "
                  r"([\d.]+) ms max latency, (\d+) ms 50th, (\d+) ms 95th, (\d+) ms 99th", res.stdout)
    if res.returncode != 0 or m is None:
        raise RuntimeError(f"ProducerPerformance failed ({res.returncode}):\n{res.stdout[-2000:]}{res.stderr[-2000:]}")
    return {"records": int(m[1]), "events_per_s": float(m[2]), "mb_per_s": float(m[3]),
            "latency_ms_avg": float(m[4]), "latency_ms_p50": int(m[6]), "latency_ms_p99": int(m[8])}
