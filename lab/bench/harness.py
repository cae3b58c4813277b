"""The stack under measurement: the plan, the Lab, RSS sampling, the closed loop, group watches, scratch topics."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import psutil
import requests
from kafka import TopicPartition

from lab import processes
from lab.bench.stats import percentile
from lab.stack import Stack
from services.analytics.live import GROUP as ANALYTICS_GROUP
from services.common import kafka_clients, lag
from services.common.topics import INVENTORY_EVENTS, ORDER_EVENTS
from services.inventory.worker import GROUP as INVENTORY_GROUP
from services.producer.app import ORDER_LINGER_MS

# Scratch topics and groups the raw loops use; created and deleted by the bench.
RAW_OUT_TOPIC = "bench.raw-inventory"
PERF_TOPIC = "bench.perf"
RAW_GROUP = "bench-raw-consume-produce"
CLIENTS_TOPIC = "bench.clients"  # what the raw producers of the clients section write
SCRATCH_TOPICS = (RAW_OUT_TOPIC, PERF_TOPIC, CLIENTS_TOPIC)


@dataclass(frozen=True)
class Plan:
    """How much work each section does; `quick` is the CI smoke size."""
    reps: int = 5                                  # repetitions of each timed run
    bulk_sizes: tuple[int, ...] = (1_000, 10_000, 100_000)
    bulk_reps_largest: int = 5                     # pairs at 100k: one pair alone is too noisy to judge
    bulk_inner_most: int = 20                      # back-to-back pairs per rep of a small bulk, at most
    order_concurrency: tuple[int, ...] = (1, 8, 32)
    order_seconds: float = 5.0                     # window per concurrency level and rep (requests for a p99)
    order_warmup_s: float = 0.5
    order_reps: int = 3
    e2e_n: int = 10_000
    inventory_n: int = 20_000
    inventory_reps: int = 3
    perf_records: int = 300_000
    perf_reps: int = 2
    clients_n: int = 50_000                        # orders per produce run of the clients section
    clients_reps: int = 3                          # rotations: each client first, second and third once
    # --scale: history sizes in events, (small, mid, large): restarts compare large with small, replay large with mid.
    scale_events: tuple[int, int, int] = (10_000, 100_000, 1_000_000)
    scale_reps: int = 3
    scale_home: str | None = None                  # where the history stacks live; default LAB_HOME/bench-scale
    quick: bool = False

    @classmethod
    def quick_plan(cls) -> "Plan":
        # Three pairs of a small bulk, not 20: the smoke run checks each figure exists, not its noise.
        return cls(reps=1, bulk_sizes=(200, 1_000, 3_000), bulk_reps_largest=1, bulk_inner_most=3, order_seconds=0.7,
                   order_warmup_s=0.2, order_reps=1, e2e_n=1_000, inventory_n=5_000, inventory_reps=1,
                   perf_records=20_000, perf_reps=1, clients_n=3_000, clients_reps=1,
                   # Two history stacks, not three (small is mid): every stack costs a broker and three services.
                   scale_events=(400, 400, 4_000), scale_reps=1, quick=True)


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
        self.http.headers.update(self.cfg.authorization())
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


def ensure_scratch_topics(lab: Lab) -> None:
    existing = set(lab.admin.list_topics())
    new = {t: {"num_partitions": 3, "replication_factor": lab.cfg.topic_replication_factor}
           for t in SCRATCH_TOPICS if t not in existing}
    if new:
        lab.admin.create_topics(new, wait_for_metadata=True)


def drop_scratch(lab: Lab) -> None:
    """Leave nothing of the bench on the broker but the orders it produced through the services."""
    existing = set(lab.admin.list_topics())
    scratch = [t for t in SCRATCH_TOPICS if t in existing]
    if scratch:
        lab.admin.delete_topics(scratch)
    if RAW_GROUP in {g["group_id"] for g in lab.admin.list_groups()}:
        lab.admin.delete_groups([RAW_GROUP])
