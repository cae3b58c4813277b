"""./run_all.sh bench: the lab's speed, as ratios against raw kafka-python on the same broker.

The machine is shared and noisy, so every figure that has a target is a ratio: the service
and a raw kafka-python loop doing the same work, measured side by side in one run, several
repetitions each (median and spread). Sections, in the order they run:

  e2e       10k mixed orders: first produce -> /metrics counts them all; creation -> inventory latency
  replay    POST /replay against a raw consumer reading and JSON-decoding the same partitions from 0
  orders    POST /order at concurrency 1, 8, 32: requests/s, p50/p99 latency
  inventory inventory-consumer (transactional) against raw consume-and-produce loops on the same records
  bulk      POST /orders/bulk for n = 1k, 10k, 100k against a raw producer loop; growth with n; peak RSS
  perf      Kafka's own ProducerPerformance on the same broker: the ceiling, for information

`./run_all.sh bench --quick` is the smoke-test size. The figures go to reports/bench.json
(or --out) and a table to stdout.
"""
from __future__ import annotations

import argparse
import datetime as dt
import gc
import http.client
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from urllib.parse import urlparse

import psutil
import requests
from kafka import KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata

from lab import paths, processes
from lab.broker import kafka_version
from lab.stack import ANALYTICS, INVENTORY, KAFKA, PRODUCER, Stack, StackError
from services.common import events, kafka_clients, lag
from services.common.runtime import freeze_startup_heap
from services.common.topics import INVENTORY_EVENTS, ORDER_EVENTS
from services.producer.app import ORDER_LINGER_MS

ANALYTICS_GROUP = "analytics-grp"
INVENTORY_GROUP = "inventory-grp"
# Scratch topics and groups the raw loops use; created and deleted by the bench.
RAW_OUT_TOPIC = "bench.raw-inventory"
PERF_TOPIC = "bench.perf"
RAW_GROUP = "bench-raw-consume-produce"
SECTIONS = ("e2e", "replay", "orders", "inventory", "bulk", "perf")


@dataclass(frozen=True)
class Plan:
    """How much work each section does; `quick` is the CI smoke size."""
    reps: int = 5                                  # repetitions of each timed run
    bulk_sizes: tuple[int, ...] = (1_000, 10_000, 100_000)
    bulk_reps_largest: int = 5                     # pairs at 100k: one pair's service/raw ran 0.86-1.37 (K, M)
    order_concurrency: tuple[int, ...] = (1, 8, 32)
    order_seconds: float = 5.0                     # measured window per concurrency level and rep (p99 of ~4k requests)
    order_warmup_s: float = 0.5
    order_reps: int = 3
    e2e_n: int = 10_000
    inventory_n: int = 20_000
    inventory_reps: int = 3
    perf_records: int = 300_000
    perf_reps: int = 2
    quick: bool = False

    @classmethod
    def quick_plan(cls) -> "Plan":
        return cls(reps=1, bulk_sizes=(200, 1_000, 3_000), bulk_reps_largest=1, order_seconds=0.7,
                   order_warmup_s=0.2, order_reps=1, e2e_n=1_000, inventory_n=5_000, inventory_reps=1,
                   perf_records=20_000, perf_reps=1, quick=True)


# -- statistics ------------------------------------------------------------------------------

def summary(values) -> dict:
    """Median, min, max and spread ((max - min) / median) of repeated measurements."""
    vals = [float(v) for v in values]
    if not vals:
        return {"median": None, "min": None, "max": None, "spread_pct": None, "n": 0, "values": []}
    med = statistics.median(vals)
    return {"median": round(med, 4), "min": round(min(vals), 4), "max": round(max(vals), 4),
            "spread_pct": round(100 * (max(vals) - min(vals)) / med, 1) if med else None,
            "n": len(vals), "values": [round(v, 4) for v in vals]}


def percentile(values, q: float) -> float | None:
    """Nearest-rank percentile."""
    if not values:
        return None
    s = sorted(values)
    return s[max(0, min(len(s) - 1, -(-len(s) * q // 100) - 1))]


def ratio(a, b) -> float | None:
    return round(a / b, 3) if a is not None and b else None


# -- raw kafka-python baselines: the same work without the services ----------------------------

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


# -- the stack under measurement ---------------------------------------------------------------

class RssSampler:
    """Peak resident memory of each service's process tree, sampled on a thread."""

    def __init__(self, pids: dict[str, list[int]], interval_s: float = 0.1):
        self.pids, self.interval_s = pids, interval_s
        self.peak_bytes: dict[str, int] = {name: 0 for name in pids}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-rss", daemon=True)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while True:
            for name, pids in self.pids.items():
                self.peak_bytes[name] = max(self.peak_bytes[name], sum(tree_rss(p) for p in pids))
            if self._stop.wait(self.interval_s):
                return


def tree_rss(pid: int) -> int:
    """RSS of a process and all its children (gunicorn's master and worker)."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


@dataclass
class Lab:
    """The stack being measured and the clients the bench talks to it with."""
    stack: Stack
    plan: Plan
    say: object = print
    cfg: object = None
    http: requests.Session = field(default_factory=requests.Session)

    def __post_init__(self):
        self.cfg = self.stack.service_config()
        if self.cfg.api_token:
            self.http.headers["Authorization"] = f"Bearer {self.cfg.api_token}"
        self.admin = kafka_clients.admin(self.cfg, client_id="bench-admin")
        # A short fetch wait: each lag read seeks this consumer back behind its parked fetch.
        self.peek = kafka_clients.consumer(self.cfg, group_id=None, client_id="bench-peek", fetch_max_wait_ms=50)
        self.offsets = kafka_clients.consumer(self.cfg, group_id=None, client_id="bench-offsets")
        # End offsets past open transactions too (the high watermark), to see when none is open.
        self.offsets_uncommitted = kafka_clients.consumer(self.cfg, group_id=None, client_id="bench-hw",
                                                          isolation_level="read_uncommitted")
        # One long-lived raw producer, warmed up and configured like producer-order's.
        self.producer = kafka_clients.producer(self.cfg, client_id="bench-raw", linger_ms=ORDER_LINGER_MS)
        self.producer.partitions_for(ORDER_EVENTS)

    def close(self) -> None:
        self.producer.close(timeout=5)
        for c in (self.peek, self.offsets, self.offsets_uncommitted):
            c.close()
        self.admin.close()
        self.http.close()

    # HTTP
    def post(self, url: str, body: dict | None = None, timeout: float = 600) -> tuple[requests.Response, float]:
        t0 = time.perf_counter()
        r = self.http.post(url, json=body, timeout=timeout)
        return r, time.perf_counter() - t0

    def metrics(self) -> dict:
        r = self.http.get(self.stack.analytics_url + "/metrics", timeout=60)
        r.raise_for_status()
        return r.json()

    # offsets
    def partitions(self, topic: str) -> list[TopicPartition]:
        return [TopicPartition(topic, p) for p in sorted(self.offsets.partitions_for_topic(topic) or ())]

    def end_offsets(self, topics, *, stable: bool = True) -> dict[TopicPartition, int]:
        """The last stable offsets (what read_committed readers reach), or with stable=False the high watermarks."""
        return kafka_clients.end_offsets(self.offsets if stable else self.offsets_uncommitted,
                                         [tp for t in topics for tp in self.partitions(t)])

    def committed(self, group: str, tps) -> dict[TopicPartition, int]:
        got = self.admin.list_group_offsets({group: list(tps)}).get(group, {})
        return {tp: (got[tp].offset if tp in got and got[tp].offset >= 0 else 0) for tp in tps}

    def settle(self, groups=(INVENTORY_GROUP, ANALYTICS_GROUP), timeout_s: float = 600) -> float:
        """Wait until the consumer groups have no lag (so one run's backlog never slows the next)."""
        topics = {INVENTORY_GROUP: [ORDER_EVENTS], ANALYTICS_GROUP: [ORDER_EVENTS, INVENTORY_EVENTS]}
        t0 = time.monotonic()
        while True:
            rows = [r for g in groups for r in lag.group_lag(self.admin, g, topics[g], self.peek)]
            # A restarted analytics rebuilds from the topics with no lag to show for it.
            if all(r.lag == 0 for r in rows) and (ANALYTICS_GROUP not in groups
                                                  or self.metrics()["consumer"]["phase"] == "live"):
                return time.monotonic() - t0
            if time.monotonic() - t0 > timeout_s:
                raise TimeoutError(f"consumers did not catch up in {timeout_s}s: "
                                   + ", ".join(f"{r.group}/{r.topic}-{r.partition} lag {r.lag}" for r in rows if r.lag))
            time.sleep(0.1)

    # services
    def pids(self, service: str) -> list[int]:
        return self.stack.status()[service]["pids"]

    def stop_service(self, service: str) -> None:
        """SIGTERM every instance: the worker ends its transaction and leaves its group."""
        for f in sorted((self.stack.home / "run").glob(f"{service}-*.pid")):
            processes.stop(f, timeout=30)

    def start_service(self, service: str) -> None:
        self.stack.start_instance(service, 0)


# -- sections ------------------------------------------------------------------------------------

def bench_e2e(lab: Lab) -> dict:
    """10k mixed orders: produce time, time until /metrics counts all of them, creation -> inventory latency.

    The moment analytics has folded every order and inventory event is read from its
    group's committed offsets (it commits right after folding a batch), polled every 10 ms
    from outside the services. Polling /metrics itself would measure in steps of one
    /metrics call, which under this load takes 0.2-0.4 s (its lag readings); one /metrics
    call afterwards confirms it counts them all.
    """
    n = lab.plan.e2e_n
    orders_tps, inventory_tps = lab.partitions(ORDER_EVENTS), lab.partitions(INVENTORY_EVENTS)
    # Warm-up: the first transaction after a start looks up coordinators (~0.3 s).
    lab.post(lab.stack.producer_url + "/orders/bulk", {"n": min(n, 500), "item": events.MIXED})
    rows = []
    for rep in range(lab.plan.reps):
        lab.settle()
        base = lab.metrics()
        inv_start = lab.end_offsets([INVENTORY_EVENTS])
        t0 = time.perf_counter()
        r, produce_s = lab.post(lab.stack.producer_url + "/orders/bulk", {"n": n, "item": events.MIXED})
        if r.status_code != 201:
            raise RuntimeError(f"bulk of {n} answered {r.status_code}: {r.text[:300]}")
        orders_end = lab.end_offsets([ORDER_EVENTS])
        inventory_end = None
        deadline = time.monotonic() + 600
        while True:
            t_ask = time.perf_counter()
            if inventory_end is None and all(
                    c >= orders_end[tp] for tp, c in lab.committed(INVENTORY_GROUP, orders_tps).items()):
                # inventory-consumer committed every order, so its output is final once the
                # last commit's markers are written: Kafka writes them partition by partition,
                # and inventory-grp's offsets can show before the markers on InventoryEvents
                # (a run once stopped the clock 401 inventory events early). No transaction is
                # open when each partition's last stable offset is its high watermark; the
                # last offset is then the commit marker.
                stable = lab.end_offsets([INVENTORY_EVENTS])
                if stable == lab.end_offsets([INVENTORY_EVENTS], stable=False):
                    inventory_end = {tp: end - 1 for tp, end in stable.items()}
            if inventory_end is not None:
                folded = lab.committed(ANALYTICS_GROUP, orders_tps + inventory_tps)
                if all(folded[tp] >= orders_end[tp] for tp in orders_tps) and \
                        all(folded[tp] >= inventory_end[tp] for tp in inventory_tps):
                    e2e_s = t_ask - t0
                    break
            if time.monotonic() > deadline:
                raise TimeoutError(f"analytics did not fold the {n} orders within 600s")
            time.sleep(0.01)
        m = lab.metrics()
        if m["orders_total"] < base["orders_total"] + n or m["inventory_events_total"] < base["inventory_events_total"] + n:
            raise RuntimeError(f"analytics committed the {n} orders but /metrics does not count them: "
                               f"{m['orders_total'] - base['orders_total']} orders, "
                               f"{m['inventory_events_total'] - base['inventory_events_total']} inventory events")
        latencies = inventory_latencies(lab, inv_start)
        rows.append({"produce_s": produce_s, "e2e_s": e2e_s, "ratio": e2e_s / produce_s,
                     "latency_p50_ms": percentile(latencies, 50), "latency_p99_ms": percentile(latencies, 99),
                     "latency_samples": len(latencies), "metrics_latency_ms": m["latency_ms"]})
        lab.say(f"  e2e rep {rep + 1}: produce {produce_s:.2f}s, all folded by analytics after {e2e_s:.2f}s "
                f"(x{e2e_s / produce_s:.2f}), latency p50 {rows[-1]['latency_p50_ms']} ms "
                f"p99 {rows[-1]['latency_p99_ms']} ms")
    return {
        "n": n,
        "produce_s": summary(r["produce_s"] for r in rows),
        "e2e_s": summary(r["e2e_s"] for r in rows),
        "e2e_over_produce": summary(r["ratio"] for r in rows),
        "latency_p50_ms": summary(r["latency_p50_ms"] for r in rows),
        "latency_p99_ms": summary(r["latency_p99_ms"] for r in rows),
        # /metrics' own percentiles cover every event since the topics began (warm-up and earlier reps too).
        "metrics_latency_ms_cumulative": rows[-1]["metrics_latency_ms"],
        "reps": rows,
    }


def inventory_latencies(lab: Lab, start: dict[TopicPartition, int]) -> list[int]:
    """processed_ms - order_created_ms of the InventoryEvents written after start: what /metrics folds."""
    ends = lab.end_offsets([INVENTORY_EVENTS])
    c = kafka_clients.consumer(lab.cfg, group_id=None, client_id="bench-latency", max_poll_records=5000)
    out = []
    try:
        c.assign(list(ends))
        for tp in ends:
            c.seek(tp, start[tp])
        while any(c.position(tp) < ends[tp] for tp in ends):
            for tp, recs in c.poll(timeout_ms=500).items():
                for rec in recs:
                    if rec.offset < ends[tp]:
                        ev = json.loads(rec.value)
                        out.append(max(0, ev["processed_ms"] - ev["order_created_ms"]))
    finally:
        c.close()
    return out


def bench_replay(lab: Lab) -> dict:
    """POST /replay against a raw consumer reading and decoding the same partitions from offset 0."""
    service, raw = [], []
    seed_for_replay(lab)
    for rep in range(lab.plan.reps):
        lab.settle()
        ends = lab.end_offsets([ORDER_EVENTS, INVENTORY_EVENTS])
        runs = ("service", "raw") if rep % 2 == 0 else ("raw", "service")
        for who in runs:
            if who == "service":
                r, seconds = lab.post(lab.stack.analytics_url + "/replay")
                if r.status_code != 200:
                    raise RuntimeError(f"/replay answered {r.status_code}: {r.text[:300]}")
                body = r.json()
                service.append({"events": body["events_replayed"], "seconds": seconds,
                                "server_seconds": body["duration_s"],
                                "events_per_s": body["events_replayed"] / seconds})
            else:
                raw.append(raw_read_decode(lab.cfg, ends))
        lab.say(f"  replay rep {rep + 1}: service {service[-1]['events_per_s']:.0f} ev/s, "
                f"raw read+decode {raw[-1]['events_per_s']:.0f} ev/s over {service[-1]['events']} events")
    return _versus(service, raw, events=service[0]["events"])


def seed_for_replay(lab: Lab) -> None:
    """Top OrderEvents up to the orders the e2e section leaves, so replay alone reads as much.

    In a full run e2e has already written them; `--only replay` on a fresh stack would
    otherwise time a replay of nothing.
    """
    want = lab.plan.reps * lab.plan.e2e_n
    have = sum(lab.end_offsets([ORDER_EVENTS]).values())
    if have < want:
        lab.say(f"  replay: writing {want - have:,} orders first, so there is something to replay")
    while have < want:
        n = min(want - have, lab.cfg.max_bulk_n)  # one request takes at most MAX_BULK_N
        r, _ = lab.post(lab.stack.producer_url + "/orders/bulk", {"n": n, "item": events.MIXED})
        if r.status_code != 201:
            raise RuntimeError(f"/orders/bulk answered {r.status_code}: {r.text[:300]}")
        have += n


def _versus(service: list[dict], raw: list[dict], **extra) -> dict:
    ratios = [s["events_per_s"] / r["events_per_s"] for s, r in zip(service, raw)]
    return {**extra,
            "service_events_per_s": summary(s["events_per_s"] for s in service),
            "raw_events_per_s": summary(r["events_per_s"] for r in raw),
            # The median of the side-by-side pairs' ratios, as for bulk growth: a load spike
            # from elsewhere hits both halves of a pair, where a ratio of two medians taken
            # apart keeps it (replay, run of 22:28: 0.79 as a ratio of medians, 0.87 paired).
            "ratio": pair_median(service, raw, "events_per_s"),
            "ratio_of_medians": ratio(statistics.median(s["events_per_s"] for s in service),
                                      statistics.median(r["events_per_s"] for r in raw)),
            "ratio_per_rep": summary(ratios),
            "service_runs": service, "raw_runs": raw}


def bench_orders(lab: Lab) -> dict:
    """POST /order from c keep-alive connections at once, and a raw send+wait from c threads beside it."""
    out = {}
    for c in lab.plan.order_concurrency:
        service, raw = [], []
        for rep in range(lab.plan.order_reps):
            for who in (("service", "raw") if rep % 2 == 0 else ("raw", "service")):
                lab.settle()
                if who == "service":
                    service.append(closed_loop(c, lab.plan.order_warmup_s, lab.plan.order_seconds,
                                               lambda: http_order_client(lab)))
                else:
                    raw.append(closed_loop(c, lab.plan.order_warmup_s, lab.plan.order_seconds,
                                           lambda: raw_order_client(lab.producer)))
        row = out[str(c)] = {"concurrency": c}
        for who, reps in (("service", service), ("raw", raw)):
            row[who] = {"requests_per_s": summary(r["requests_per_s"] for r in reps),
                        "p50_ms": summary(r["p50_ms"] for r in reps),
                        "p99_ms": summary(r["p99_ms"] for r in reps),
                        "errors": sum(r["errors"] for r in reps), "requests": sum(r["requests"] for r in reps)}
        s, w = row["service"], row["raw"]
        lab.say(f"  POST /order c={c}: {s['requests_per_s']['median']:.0f} req/s, p50 {s['p50_ms']['median']:.1f} ms, "
                f"p99 {s['p99_ms']['median']:.1f} ms; raw send+wait {w['requests_per_s']['median']:.0f}/s, "
                f"p50 {w['p50_ms']['median']:.1f} ms, p99 {w['p99_ms']['median']:.1f} ms")
    return out


def http_order_client(lab: Lab):
    """One keep-alive connection posting single orders: (call, close) for closed_loop."""
    url = urlparse(lab.stack.producer_url)
    headers = {"Content-Type": "application/json",
               **({"Authorization": f"Bearer {lab.cfg.api_token}"} if lab.cfg.api_token else {})}
    body = json.dumps({"item": "pizza", "qty": 1})
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)

    def call() -> bool:
        conn.request("POST", "/order", body, headers)
        resp = conn.getresponse()
        resp.read()
        return resp.status == 201
    return call, conn.close


def raw_order_client(producer):
    """What POST /order does at its core, without HTTP: one order, send, wait for its ack (the shared producer)."""
    def call() -> bool:
        ev = events.new_order("pizza", 1)
        fut = producer.send(ORDER_EVENTS, key=ev["order_id"].encode(), value=events.encode(ev))
        fut.get(timeout=30)
        return fut.succeeded()
    return call, lambda: None


def closed_loop(concurrency: int, warmup_s: float, seconds: float, client) -> dict:
    """concurrency threads, each making its next call as soon as the last one returns.

    client() gives each thread its (call, close); call() returns True on success. Only
    calls that start after the warm-up and end inside the window count.
    """
    stop = threading.Event()
    samples: list[list] = [[] for _ in range(concurrency)]

    def run(out: list) -> None:
        call, close = client()
        try:
            while not stop.is_set():
                t = time.perf_counter()
                ok = call()
                out.append((t, time.perf_counter() - t, ok))
        finally:
            close()

    threads = [threading.Thread(target=run, args=(s,), daemon=True) for s in samples]
    t_start = time.perf_counter()
    for t in threads:
        t.start()
    time.sleep(warmup_s + seconds)
    stop.set()
    for t in threads:
        t.join(60)
    lo = t_start + warmup_s
    hi = lo + seconds
    window = [s for out in samples for s in out if lo <= s[0] and s[0] + s[1] <= hi]
    ok = [s[1] * 1000 for s in window if s[2]]
    return {"requests": len(window), "errors": len(window) - len(ok), "requests_per_s": len(ok) / seconds,
            "p50_ms": percentile(ok, 50), "p99_ms": percentile(ok, 99)}


def bench_inventory(lab: Lab) -> dict:
    """inventory-consumer (exactly-once) against raw consume-and-produce loops over the same records.

    Per rep: stop inventory-consumer, produce N orders, start it and time from its first
    committed transaction to the one that reaches the end (start-up and the stock rebuild
    excluded), then run the raw loops over exactly those offsets. analytics-consumer is
    stopped throughout, so nothing else in the stack competes for the cores.
    """
    n = lab.plan.inventory_n
    service, plain, eos = [], [], []
    lab.settle()
    lab.stop_service(ANALYTICS)
    try:
        for rep in range(lab.plan.inventory_reps):
            lab.settle(groups=(INVENTORY_GROUP,))
            lab.stop_service(INVENTORY)
            tps = lab.partitions(ORDER_EVENTS)
            start = lab.committed(INVENTORY_GROUP, tps)
            if raw_produce(lab.producer, n)["acked"] != n:
                raise RuntimeError("the raw producer could not write the inventory input")
            end = lab.end_offsets([ORDER_EVENTS])
            t_started = time.perf_counter()
            lab.start_service(INVENTORY)
            service.append(watch_group(lab, INVENTORY_GROUP, start, end, t_started))
            ranges = {tp: (start[tp], end[tp]) for tp in tps}
            plain.append(raw_consume_produce(lab.cfg, ranges, transactional=False))
            eos.append(raw_consume_produce(lab.cfg, ranges, transactional=True))
            lab.say(f"  inventory rep {rep + 1}: service {service[-1]['events_per_s']:.0f} ev/s, "
                    f"raw consume-produce {plain[-1]['events_per_s']:.0f} ev/s, "
                    f"raw with transactions {eos[-1]['events_per_s']:.0f} ev/s ({n} orders)")
    finally:
        lab.start_service(ANALYTICS)
        lab.stack.wait_healthy()
    out = _versus(service, plain, n=n)
    out["raw_eos_events_per_s"] = summary(r["events_per_s"] for r in eos)
    out["ratio_vs_raw_eos"] = round(statistics.median(s["events_per_s"] / e["events_per_s"]
                                                      for s, e in zip(service, eos)), 3)
    out["raw_eos_runs"] = eos
    return out


def watch_group(lab: Lab, group: str, start: dict, end: dict, t_started: float, timeout_s: float = 600) -> dict:
    """Poll group's committed offsets until they reach end: the rate after its first commit.

    When the first commit seen already covers everything (a small n), the rate counts
    from t_started (the process start) instead, start-up included; "timed_from" says which.
    """
    t_first = done_first = None
    total = sum(end[tp] - start[tp] for tp in end)
    deadline = time.monotonic() + timeout_s
    while True:
        now = time.perf_counter()
        committed = lab.committed(group, list(end))
        done = sum(min(committed[tp], end[tp]) - start[tp] for tp in end)
        if done > 0 and t_first is None:
            t_first, done_first = now, done
        if done >= total:
            if done_first < total:
                seconds, timed, timed_from = now - t_first, total - done_first, "first commit"
            else:
                seconds, timed, timed_from = now - t_started, total, "process start"
            return {"events": total, "timed_events": timed, "seconds": seconds,
                    "events_per_s": timed / seconds, "timed_from": timed_from}
        if time.monotonic() > deadline:
            raise TimeoutError(f"{group} committed {done}/{total} in {timeout_s}s")
        time.sleep(0.05)


def bench_bulk(lab: Lab) -> dict:
    """POST /orders/bulk against the raw producer loop at each n; growth with n; peak RSS at the largest."""
    sizes = lab.plan.bulk_sizes
    runs: dict[int, dict[str, list]] = {n: {"service": [], "raw": []} for n in sizes}
    rss_peak = {name: 0 for name in (PRODUCER, INVENTORY, ANALYTICS, KAFKA)}
    for rep in range(lab.plan.reps):
        for n in sizes:
            if n == max(sizes) and rep >= lab.plan.bulk_reps_largest:
                continue
            # A small bulk takes tens of ms, where scheduling noise on a shared machine is as
            # large as the figure: it runs several times (pairs alternating).
            inner = bulk_inner(n, sizes)
            for i in range(inner):
                for who in (("service", "raw") if (rep + i) % 2 == 0 else ("raw", "service")):
                    # Every run starts with idle consumers. Back to back, the second run of a
                    # pair shared the CPU with the consumers working through the first one's
                    # events; alternating the order evened that out only on average, and the
                    # 1k runs spread from 3k to 30k events/s.
                    lab.settle()
                    runs[n][who].append(bulk_run(lab, who, n, rss_peak if n == max(sizes) else None))
            s, w = runs[n]["service"][-1], runs[n]["raw"][-1]
            lab.say(f"  bulk rep {rep + 1} n={n}{f' (x{inner})' if inner > 1 else ''}: "
                    f"service {s['events_per_s']:.0f} ev/s ({s['seconds']:.3f}s), "
                    f"raw {w['events_per_s']:.0f} ev/s ({w['seconds']:.3f}s)")
    by_n = {str(n): _versus(runs[n]["service"], runs[n]["raw"], n=n) for n in sizes}
    for n in sizes:
        for who in ("service", "raw"):
            by_n[str(n)][f"{who}_seconds"] = summary(x["seconds"] for x in runs[n][who])
    # Side by side: the service's time over the raw loop's at each n. Flat means the service
    # grows as the raw client does, whatever the machine adds (on a live stack the consumers
    # work through a long bulk while it runs, which slows both sides at the largest n). Each
    # service run is paired with the raw run next to it, and the figure is the median of the
    # pairs' ratios: a load spike from elsewhere then hits both halves of a pair, where a
    # ratio of two separate medians kept it.
    time_ratios = {str(n): pair_median(runs[n]["service"], runs[n]["raw"], "seconds") for n in sizes}
    return {
        "by_n": by_n,
        "linearity": {**{who: linearity({n: by_n[str(n)][f"{who}_seconds"]["median"] for n in sizes})
                         for who in ("service", "raw")},
                      "service_over_raw_time": time_ratios,
                      "flatness": flatness(time_ratios)},
        "peak_rss_mb": {name: round(b / 2**20, 1) for name, b in rss_peak.items()},
        "rss_during": f"POST /orders/bulk n={max(sizes)} until both consumers caught up with it",
        "broker_heap": lab.stack.broker.heap if not lab.stack.external_bootstrap else None,
    }


def pair_median(service: list[dict], raw: list[dict], key: str) -> float:
    """The median over side-by-side pairs of service[i][key] / raw[i][key]."""
    return round(statistics.median(s[key] / r[key] for s, r in zip(service, raw)), 3)


def flatness(time_ratios: dict[str, float]) -> float:
    """max/min over n of (service time / raw time): 1 = the service grows with n as the raw loop does."""
    return round(max(time_ratios.values()) / min(time_ratios.values()), 3)


def bulk_inner(n: int, sizes) -> int:
    """Back-to-back runs per repetition: one for the largest n, 20 at 1k, 3 at 10k.

    The smaller the bulk, the larger the noise next to it (1k: 40-90 ms a bulk, spread over
    150%), so the more pairs its median needs.
    """
    return 1 if n == max(sizes) else max(1, min(20, 30_000 // n))


def bulk_run(lab: Lab, who: str, n: int, rss_peak: dict | None) -> dict:
    """One bulk of n: through POST /orders/bulk ("service") or the raw producer loop ("raw").

    With rss_peak, the services' memory is sampled from the request until the consumers
    have worked through the bulk, and the peaks are folded into rss_peak.
    """
    if who == "raw":
        res = raw_produce(lab.producer, n)
        return {"acked": res["acked"], "seconds": res["seconds"], "events_per_s": res["events_per_s"]}
    if rss_peak is None:
        r, seconds = lab.post(lab.stack.producer_url + "/orders/bulk", {"n": n, "item": events.MIXED})
    else:
        with RssSampler({name: lab.pids(name) for name in rss_peak}) as rss:
            r, seconds = lab.post(lab.stack.producer_url + "/orders/bulk", {"n": n, "item": events.MIXED})
            lab.settle()  # the consumers' memory peaks while they work through the bulk
        for name, peak in rss.peak_bytes.items():
            rss_peak[name] = max(rss_peak[name], peak)
    if r.status_code != 201:
        raise RuntimeError(f"bulk of {n} answered {r.status_code}: {r.text[:300]}")
    body = r.json()
    return {"acked": body["produced"], "seconds": seconds, "server_seconds": body["duration_s"],
            "events_per_s": body["produced"] / seconds}


def linearity(seconds_by_n: dict[int, float]) -> dict:
    """How time grows with n: per-event time at each n and the marginal cost of the last step vs the first.

    Marginal cost per event between consecutive sizes removes the fixed cost of a request
    (HTTP, the final flush round trip); for linear growth the last step costs what the
    first did, so `marginal_ratio` is 1.
    """
    ns = sorted(seconds_by_n)
    per_event_us = {str(n): round(seconds_by_n[n] / n * 1e6, 2) for n in ns}
    steps = [(seconds_by_n[b] - seconds_by_n[a]) / (b - a) for a, b in zip(ns, ns[1:])]
    return {"per_event_us": per_event_us,
            # Information (the target is flatness, see targets()): 1 = the same time per event at every n.
            "max_over_min": round(max(per_event_us.values()) / min(per_event_us.values()), 3),
            "marginal_us": [round(s * 1e6, 2) for s in steps],
            "marginal_ratio": round(steps[-1] / steps[0], 3) if steps and steps[0] > 0 else None}


def bench_perf(lab: Lab) -> dict:
    """Kafka's own Java producer on the same broker and record size: the ceiling, not a target."""
    sample = [len(events.encode(ev)) for ev in events.bulk_orders(1000, events.MIXED)]
    size = int(statistics.median(sample))
    log_file = lab.stack.home / "logs" / "bench-producer-performance.log"
    runs = [producer_performance(lab.cfg.bootstrap, lab.plan.perf_records, size, log_file)
            for _ in range(lab.plan.perf_reps)]
    res = {"record_size": size, "records": lab.plan.perf_records,
           "events_per_s": summary(r["events_per_s"] for r in runs), "runs": runs,
           "settings": f"acks=all enable.idempotence=true linger.ms={ORDER_LINGER_MS} batch.size=65536, no keys"}
    lab.say(f"  ProducerPerformance: {res['events_per_s']['median']:.0f} records/s of {size} B")
    return res


# -- targets, table, report --------------------------------------------------------------------

def targets(results: dict) -> list[dict]:
    """Each target of the issue with the measured value and whether it is met."""
    rows = []

    def add(name, measured, op, bound):
        met = None if measured is None else (measured >= bound if op == ">=" else measured <= bound)
        rows.append({"target": name, "measured": None if measured is None else round(measured, 3),
                     "bound": f"{op} {bound}", "met": met})

    if "bulk" in results:
        b = results["bulk"]
        for n, row in b["by_n"].items():
            add(f"bulk produce n={n} / raw producer", row["ratio"], ">=", 0.8)
        # Growth relative to the raw loop's, not the service's own time per event: a long bulk
        # shares the 2 cores with the consumers working through it, a short one does not, so
        # any client's time per event grows with n here. In run N producer-order's went 73 ->
        # 80 -> 93 us and the raw loop's 86 -> 88 -> 108 at 1k, 10k, 100k; the four processes
        # used 1.2 cores during a 1k bulk and 1.96 of the 2 during a 100k one (psutil).
        add("bulk time grows with n as the raw loop's (max/min of service/raw time over n)",
            b["linearity"]["flatness"], "<=", 1.2)
        for name in (PRODUCER, INVENTORY, ANALYTICS):
            add(f"peak RSS {name} at the largest bulk, MB", b["peak_rss_mb"][name], "<=", 200)
    if "replay" in results:
        add("replay / raw read+decode", results["replay"]["ratio"], ">=", 0.8)
    if "inventory" in results:
        add("inventory-consumer (EOS) / raw consume-produce", results["inventory"]["ratio"], ">=", 0.7)
    if "e2e" in results:
        add(f"end-to-end time / produce time, n={results['e2e']['n']}",
            results["e2e"]["e2e_over_produce"]["median"], "<=", 1.5)
    if "orders" in results and "8" in results["orders"]:
        add("POST /order p99 at concurrency 8, ms", results["orders"]["8"]["service"]["p99_ms"]["median"], "<=", 25)
    return rows


def _f(x, digits=0) -> str:
    if x is None:
        return "-"
    return f"{x:,.{digits}f}"


def table(report: dict) -> str:
    """The figures as a markdown table (the same one goes into docs/README-bench.md)."""
    r = report["results"]
    lines = ["| figure | service | raw kafka-python | ratio | spread (service/raw) |",
             "|---|---|---|---|---|"]

    def vs(label, row, unit="ev/s"):
        s, w = row["service_events_per_s"], row["raw_events_per_s"]
        lines.append(f"| {label} | {_f(s['median'])} {unit} | {_f(w['median'])} {unit} | {_f(row['ratio'], 2)} "
                     f"| ±{_f(s['spread_pct'])}% / ±{_f(w['spread_pct'])}% |")

    if "bulk" in r:
        for n, row in r["bulk"]["by_n"].items():
            vs(f"bulk produce n={int(n):,}", row)
        lin = r["bulk"]["linearity"]
        lines.append(f"| bulk: µs/event at n={', '.join(lin['service']['per_event_us'])} "
                     f"| {' / '.join(_f(v, 1) for v in lin['service']['per_event_us'].values())} "
                     f"| {' / '.join(_f(v, 1) for v in lin['raw']['per_event_us'].values())} "
                     f"| {_f(lin['service']['max_over_min'], 2)} / {_f(lin['raw']['max_over_min'], 2)} (max/min) | |")
        lines.append(f"| bulk: marginal cost per event, last step / first step (1 = linear) "
                     f"| {_f(lin['service']['marginal_ratio'], 2)} | {_f(lin['raw']['marginal_ratio'], 2)} | | |")
        lines.append(f"| bulk: service time / raw time at n={', '.join(lin['service_over_raw_time'])} "
                     f"| {' / '.join(_f(v, 2) for v in lin['service_over_raw_time'].values())} | "
                     f"| {_f(lin['flatness'], 2)} (max/min) | |")
    if "replay" in r:
        vs(f"replay, {r['replay']['events']:,} events (raw: read + json decode)", r["replay"])
    if "inventory" in r:
        inv = r["inventory"]
        vs(f"inventory-consumer EOS vs raw consume-produce, {inv['n']:,} orders", inv)
        lines.append(f"| inventory-consumer vs raw loop *with* transactions | "
                     f"{_f(inv['service_events_per_s']['median'])} ev/s | {_f(inv['raw_eos_events_per_s']['median'])} "
                     f"ev/s | {_f(inv['ratio_vs_raw_eos'], 2)} | |")
    if "e2e" in r:
        e = r["e2e"]
        lines.append(f"| end-to-end {e['n']:,} orders: first produce → analytics has folded all | {_f(e['e2e_s']['median'], 2)} s "
                     f"| produce {_f(e['produce_s']['median'], 2)} s | {_f(e['e2e_over_produce']['median'], 2)} "
                     f"| ±{_f(e['e2e_over_produce']['spread_pct'])}% |")
        lines.append(f"| end-to-end: creation → inventory latency p50 / p99 "
                     f"| {_f(e['latency_p50_ms']['median'])} / {_f(e['latency_p99_ms']['median'])} ms | | | |")
    if "orders" in r:
        for c, row in r["orders"].items():
            s, w = row["service"], row["raw"]
            lines.append(f"| POST /order c={c}: req/s, p50 / p99 (raw: send + wait from {c} threads) "
                         f"| {_f(s['requests_per_s']['median'])} req/s, {_f(s['p50_ms']['median'], 1)} / "
                         f"{_f(s['p99_ms']['median'], 1)} ms | {_f(w['requests_per_s']['median'])}/s, "
                         f"{_f(w['p50_ms']['median'], 1)} / {_f(w['p99_ms']['median'], 1)} ms "
                         f"| {_f(ratio(s['requests_per_s']['median'], w['requests_per_s']['median']), 2)} (req/s) "
                         f"| ±{_f(s['p99_ms']['spread_pct'])}% / ±{_f(w['p99_ms']['spread_pct'])}% (p99) |")
    if "bulk" in r:
        rss = r["bulk"]["peak_rss_mb"]
        lines.append("| peak RSS at the largest bulk, MB | " + ", ".join(
            f"{k} {_f(rss[k])}" for k in (PRODUCER, INVENTORY, ANALYTICS)) +
            f" | broker {_f(rss[KAFKA])} (heap -Xmx{r['bulk']['broker_heap']}) | | |")
    if "perf" in r:
        p = r["perf"]
        raw100 = r.get("bulk", {}).get("by_n", {})
        raw_top = raw100[max(raw100, key=int)]["raw_events_per_s"]["median"] if raw100 else None
        lines.append(f"| ProducerPerformance (Java), {p['record_size']} B records (information) "
                     f"| {_f(p['events_per_s']['median'])} rec/s | {_f(raw_top)} ev/s | "
                     f"{_f(ratio(raw_top, p['events_per_s']['median']), 2)} (raw / Java) | |")
    lines.append("")
    lines.append("| target | measured | bound | met |")
    lines.append("|---|---|---|---|")
    for t in report["targets"]:
        met = {True: "yes", False: "**no**", None: "-"}[t["met"]]
        lines.append(f"| {t['target']} | {t['measured']} | {t['bound']} | {met} |")
    return "\n".join(lines)


def machine(stack: Stack) -> dict:
    import kafka
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=paths.ROOT, capture_output=True,
                                text=True).stdout.strip() or None
    except OSError:
        commit = None
    return {"cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
            "kafka": kafka_version(), "kafka_python": kafka.__version__,
            "memory_gb": round(psutil.virtual_memory().total / 2**30, 1), "git_commit": commit,
            "broker_heap": stack.broker.heap if not stack.external_bootstrap else None}


RUNNERS = {"e2e": bench_e2e, "replay": bench_replay, "orders": bench_orders, "inventory": bench_inventory,
           "bulk": bench_bulk, "perf": bench_perf}


def run(stack: Stack, plan: Plan, sections=SECTIONS, say=print) -> dict:
    """Run the sections against a running stack and return the report (nothing written)."""
    started = dt.datetime.now(dt.timezone.utc)
    # The raw loops run here, beside ~180k objects of the bench's own imports. The services
    # freeze theirs; so does the bench, or each full collection during a raw run would rescan
    # them and the raw side would pay for the harness, not for kafka-python. Undone at the
    # end: run() may be called inside a longer-lived process (the test suite).
    freeze_startup_heap()
    lab = Lab(stack, plan, say)
    results: dict = {}
    section_seconds: dict = {}
    load_before = os.getloadavg()
    try:
        ensure_scratch_topics(lab)
        for name in SECTIONS:
            if name in sections:
                say(f"[bench] {name}")
                t0 = time.monotonic()
                results[name] = RUNNERS[name](lab)
                section_seconds[name] = round(time.monotonic() - t0, 1)
    finally:
        drop_scratch(lab)
        lab.close()
        gc.unfreeze()
    report = {
        "date": started.isoformat(timespec="seconds"),
        "machine": {**machine(stack), "loadavg_1m_before": round(load_before[0], 2),
                    "loadavg_1m_after": round(os.getloadavg()[0], 2)},
        "plan": asdict(plan),
        "section_seconds": section_seconds,
        "results": results,
    }
    report["targets"] = targets(results)
    return report


def ensure_scratch_topics(lab: Lab) -> None:
    existing = set(lab.admin.list_topics())
    new = {t: {"num_partitions": 3, "replication_factor": lab.cfg.topic_replication_factor}
           for t in (RAW_OUT_TOPIC, PERF_TOPIC) if t not in existing}
    if new:
        lab.admin.create_topics(new, wait_for_metadata=True)


def drop_scratch(lab: Lab) -> None:
    """Leave nothing of the bench on the broker but the orders it produced through the services."""
    existing = set(lab.admin.list_topics())
    scratch = [t for t in (RAW_OUT_TOPIC, PERF_TOPIC) if t in existing]
    if scratch:
        lab.admin.delete_topics(scratch)
    if RAW_GROUP in {g["group_id"] for g in lab.admin.list_groups()}:
        lab.admin.delete_groups([RAW_GROUP])


# -- command line --------------------------------------------------------------------------------

def orders_written(plan: Plan, sections=SECTIONS) -> int:
    """About how many orders a run writes to OrderEvents (single orders not counted)."""
    total = 0
    if "bulk" in sections:
        for n in plan.bulk_sizes:
            reps = plan.bulk_reps_largest if n == max(plan.bulk_sizes) else plan.reps
            inner = bulk_inner(n, plan.bulk_sizes)
            total += 2 * reps * inner * n
    if "e2e" in sections:
        total += plan.reps * plan.e2e_n + min(plan.e2e_n, 500)
    elif "replay" in sections:
        total += plan.reps * plan.e2e_n  # at most: seed_for_replay tops up to this
    if "inventory" in sections:
        total += plan.inventory_reps * plan.inventory_n
    return total


def main(argv: list[str], stack: Stack) -> int:
    """./run_all.sh bench [--quick] [--reps N] [--only a,b] [--out FILE]"""
    p = argparse.ArgumentParser(prog="run_all.sh bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke-test sizes, one repetition")
    p.add_argument("--reps", type=int, help="repetitions of each timed run (default 5; quick 1)")
    p.add_argument("--only", help=f"comma-separated sections of {','.join(SECTIONS)}")
    p.add_argument("--out", type=Path, default=paths.REPORTS_DIR / "bench.json",
                   help="where the JSON goes (default $LAB_REPORTS_DIR or reports/, bench.json)")
    args = p.parse_args(argv)
    plan = Plan.quick_plan() if args.quick else Plan()
    if args.reps:
        plan = replace(plan, reps=args.reps, bulk_reps_largest=min(plan.bulk_reps_largest, args.reps),
                       order_reps=min(plan.order_reps, args.reps), inventory_reps=min(plan.inventory_reps, args.reps),
                       perf_reps=min(plan.perf_reps, args.reps))
    sections = tuple(s.strip() for s in args.only.split(",")) if args.only else SECTIONS
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        p.error(f"unknown sections {sorted(unknown)}; choose from {','.join(SECTIONS)}")

    if stack.kind == "compose":
        # The bench reads each service's RSS and restarts them by pid: embedded processes only.
        raise StackError("the bench measures the embedded stack (it reads the services' processes): "
                         "run ./run_all.sh bench without --compose")
    own = None
    if not stack.external_bootstrap and not stack.status()[KAFKA]["running"]:
        # Nothing runs: measure on a fresh stack of our own (the same ports, an empty state
        # folder under LAB_HOME), so no earlier data weighs on replay or the stock rebuild.
        home = stack.home / "bench"
        shutil.rmtree(home, ignore_errors=True)
        own = replace(stack, home=home)
        stack = own
        stack.progress(f"[bench] fresh stack in {home}")
    else:
        stack.progress(f"[bench] measuring the running stack in {stack.home}: its topics keep the "
                       f"~{orders_written(plan, sections):,} orders the bench writes (./run_all.sh down "
                       f"first to measure on a fresh stack of its own instead)")
    restore = stack.status()[INVENTORY]
    try:
        stack.up()
        if restore["running"] and (restore["overrides"] or restore["instances"] != 1):
            # Measured unthrottled and as one instance; the settings come back afterwards.
            stack.restart(INVENTORY)
        cmd = "./run_all.sh bench " + " ".join(argv)
        report = run(stack, plan, sections, say=stack.progress)
        report["command"] = cmd.strip()
    finally:
        if own is not None:
            own.down(wipe=True)
        elif restore["running"] and (restore["overrides"] or restore["instances"] != 1):
            stack.restart(INVENTORY, restore["overrides"], restore["instances"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(table(report))
    print(f"\n[bench] {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], Stack.from_env()))
