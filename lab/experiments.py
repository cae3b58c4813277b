"""The lab's three experiments, as functions the notebooks call: the 10k load, consumer lag, replay.

Each experiment talks to a running stack (lab_stack() in a notebook: embedded or compose) over HTTP and
reads Kafka directly where the point is to check the services independently. Each one
returns a plain dict that the notebook records with lab.results, and the table builders
below turn those dicts into DataFrames for the notebooks and the text report alike.
"""
from __future__ import annotations

import logging
import os
import platform
import random
import re
import sys
import threading
import time
from importlib.metadata import PackageNotFoundError, version

import pandas as pd
import requests
from kafka import TopicPartition
from kafka.errors import KafkaError

from lab import lagstatus
from lab.broker import kafka_version
from lab.pipeline import PAPERMILL_ENV
from lab.stack import ANALYTICS, INVENTORY, LabStack, restore_services
from services.analytics.metrics import flatten
from services.common import events, kafka_clients
from services.common.events import DecodeError
from services.common.lag import group_lag
from services.common.topics import INVENTORY_EVENTS, ORDER_EVENTS
from services.inventory.worker import GROUP as INVENTORY_GROUP

log = logging.getLogger(__name__)

HTTP_TIMEOUT_S = 300          # a bulk of 10k or a replay of the whole log answers well within this
POLL_S = 0.25


# -- set-up in a notebook ------------------------------------------------------------------------
PROGRESS_FORMAT = logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S")
# A progress line as PROGRESS_FORMAT writes it: the report leaves such lines out of printed output.
PROGRESS_LINE = re.compile(r"^\d\d:\d\d:\d\d ")


def under_papermill() -> bool:
    """True in a kernel that ./run_all.sh executes with papermill (it sets PAPERMILL_ENV), False in JupyterLab."""
    return os.environ.get(PAPERMILL_ENV) == "1"


def show_progress(level: int = logging.INFO) -> None:
    """Show the lab's log lines while an experiment runs.

    In JupyterLab they go to stdout: stderr would paint every line as a red error box. Under
    papermill they go to stderr, which run_all.sh streams to the terminal, indented, and the
    HTML report leaves out.
    """
    logger = logging.getLogger("lab")
    logger.setLevel(level)
    if not any(getattr(h, "_lab_progress", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr if under_papermill() else sys.stdout)
        handler.setFormatter(PROGRESS_FORMAT)
        handler._lab_progress = True
        logger.addHandler(handler)


def lab_stack() -> LabStack:
    """The stack run_all.sh (or the test) points this kernel at.

    LAB_STACK picks compose; LAB_HOME and the ports pick the rest.
    """
    from lab.compose import stack_from_env
    return stack_from_env(progress=logging.getLogger("lab.stack").info)


def notebook_setup() -> LabStack:
    """A notebook's first call: progress logging, whole tables (they are the evidence), and the stack."""
    show_progress()
    pd.set_option("display.max_rows", 500)
    pd.set_option("display.max_columns", 50)
    pd.set_option("display.width", 200)
    return lab_stack()


def versions(stack: LabStack) -> dict:
    """Kafka and client versions: the pinned broker, what the broker says it speaks, the Python side."""
    cfg = stack.service_config()
    admin = kafka_clients.admin(cfg, client_id="lab-versions")
    try:
        cluster = admin.describe_cluster()
        broker = admin.get_broker_version_data(cluster["brokers"][0]["broker_id"])
        probed = broker.broker_version_str
    finally:
        admin.close()

    def pkg(name):
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    return {
        # The embedded broker runs the version pinned in kafka/pom.xml; an external one is only probed.
        "kafka": None if stack.external_bootstrap else kafka_version(),
        "broker_api_probe": probed,
        "broker": stack.describe(),
        "cluster_id": cluster["cluster_id"],
        "python": platform.python_version(),
        "clients": {name: pkg(name) for name in
                    ("kafka-python", "requests", "flask", "pandas", "matplotlib", "papermill", "nbconvert")},
    }


# -- HTTP -----------------------------------------------------------------------------------------
def _check(resp: requests.Response) -> dict:
    if not resp.ok:
        raise RuntimeError(f"{resp.request.method} {resp.url} answered {resp.status_code}: {resp.text[:500]}")
    return resp.json()


def metrics(stack: LabStack) -> dict:
    """GET /metrics of analytics-consumer."""
    return _check(requests.get(stack.analytics_url + "/metrics", timeout=30))


def produce(stack: LabStack, n: int, item: str = events.MIXED, seed: int | None = None) -> dict:
    """POST /orders/bulk; a partial failure (503) comes back as a summary with produced < requested."""
    body = {"n": n, "item": item, **({"seed": seed} if seed is not None else {})}
    resp = requests.post(stack.producer_url + "/orders/bulk", json=body, timeout=HTTP_TIMEOUT_S)
    if resp.status_code == 503 and "produced" in resp.json():
        return resp.json()
    return _check(resp)


def replay(stack: LabStack) -> dict:
    """POST /replay: before/after/diff and the replay's throughput."""
    return _check(requests.post(stack.analytics_url + "/replay", timeout=HTTP_TIMEOUT_S))


def _settled(body: dict) -> bool:
    return (body["consumer"]["phase"] == "live" and body.get("lag") is not None
            and all(row["lag"] == 0 for row in body["lag"]))


def wait_settled(stack: LabStack, timeout_s: float = 180) -> dict:
    """Wait until analytics is live and neither group lags (twice in a row); return /metrics."""
    deadline = time.monotonic() + timeout_s
    streak, body = 0, None
    while True:
        try:
            body = metrics(stack)
        except (requests.RequestException, RuntimeError) as exc:
            # A just-restarted analytics may refuse a moment; the deadline bounds the wait.
            log.debug("metrics not yet available: %s", exc)
            body, streak = None, 0
        else:
            streak = streak + 1 if _settled(body) else 0
            if streak >= 2:
                return body
        if time.monotonic() > deadline:
            lags = [] if body is None else [(r['group'], r['partition'], r['lag']) for r in body.get('lag') or []]
            state = "no answer" if body is None else f"phase={body['consumer']['phase']} lag={lags}"
            raise TimeoutError(f"the stack did not settle within {timeout_s:.0f}s: {state}")
        time.sleep(POLL_S)


def wait_counted(stack: LabStack, orders: int, inventory_events: int, timeout_s: float = 180) -> tuple[dict, bool]:
    """Wait until /metrics counts at least these totals; returns (last /metrics, reached)."""
    deadline = time.monotonic() + timeout_s
    while True:
        body = metrics(stack)
        if body["orders_total"] >= orders and body["inventory_events_total"] >= inventory_events:
            return body, True
        if time.monotonic() > deadline:
            log.warning("analytics did not count %d orders / %d inventory events within %.0fs: has %d / %d",
                        orders, inventory_events, timeout_s, body["orders_total"], body["inventory_events_total"])
            return body, False
        time.sleep(POLL_S)


# -- 01: the 10k load -------------------------------------------------------------------------------
def split(n: int, parts: int) -> list[int]:
    """n as `parts` near-equal batch sizes, larger ones first: 10000/4 -> [2500]*4, 10/3 -> [4, 3, 3]."""
    if n < 1 or parts < 1:
        raise ValueError(f"need n >= 1 and parts >= 1, got n={n}, parts={parts}")
    parts = min(parts, n)
    return [n // parts + (1 if i < n % parts else 0) for i in range(parts)]


def expected_order_ids(sizes: list[int], item: str, base_seed: int) -> set[str]:
    """The order ids the producer generates for seeded bulks (events.bulk_orders is deterministic with a seed)."""
    return {ev["order_id"] for i, n in enumerate(sizes) for ev in events.bulk_orders(n, item, seed=base_seed + i)}


def topic_end_offsets(cfg, topic: str) -> dict[int, int]:
    """{partition: last stable offset} of topic now."""
    c = kafka_clients.consumer(cfg, group_id=None, client_id="lab-offsets")
    try:
        tps = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic) or ())]
        return {tp.partition: off for tp, off in kafka_clients.end_offsets(c, tps).items()}
    finally:
        c.close()


def read_back_inventory(cfg, start: dict[int, int], order_ids: set[str], timeout_s: float = 120) -> dict:
    """Read InventoryEvents from `start` to its end, directly from Kafka, and tally what belongs to order_ids."""
    c = kafka_clients.consumer(cfg, group_id=None, client_id="lab-readback", max_poll_records=5000)
    seen: set[str] = set()
    tally = {"records": 0, "ours": 0, "duplicates": 0, "foreign": 0, "invalid": 0, "reserved": 0, "rejected": 0}
    try:
        for p in sorted(start):
            for rec in kafka_clients.read_range(c, TopicPartition(INVENTORY_EVENTS, p), start[p], timeout_s=timeout_s):
                tally["records"] += 1
                try:
                    ev = events.decode_inventory(rec.value)
                except DecodeError:
                    tally["invalid"] += 1
                    continue
                if ev["order_id"] not in order_ids:
                    tally["foreign"] += 1
                elif ev["order_id"] in seen:
                    tally["duplicates"] += 1
                else:
                    seen.add(ev["order_id"])
                    tally["ours"] += 1
                    tally[ev["status"]] += 1
    finally:
        c.close()
    return tally


def reconcile(produced: int, read_back: int, duplicates: int, orders_delta: int, inventory_delta: int) -> dict:
    """Compare the three counts of one load; every mismatch is named, none is smoothed over."""
    counts = {"produced (acknowledged)": produced,
              "InventoryEvents read back (distinct orders)": read_back,
              "/metrics orders_total increase": orders_delta,
              "/metrics inventory_events_total increase": inventory_delta}
    mismatches = [f"{name} = {value}, expected {produced}" for name, value in counts.items() if value != produced]
    if duplicates:
        mismatches.append(f"{duplicates} duplicate InventoryEvents for the same order")
    return {"counts": counts, "duplicates": duplicates, "reconciled": not mismatches, "mismatches": mismatches}


def run_load(stack: LabStack, n_events: int, batches: int, item: str = events.MIXED,
             count_timeout_s: float = 180) -> dict:
    """Produce n_events in batches via POST /orders/bulk, wait for analytics, reconcile three counts."""
    cfg = stack.service_config()
    before = wait_settled(stack)
    inventory_start = topic_end_offsets(cfg, INVENTORY_EVENTS)
    # Seeded bulks make the order ids known in advance, so the read-back can tell our events
    # from any others; a fresh random base seed per run keeps ids unique across runs.
    base_seed = random.randrange(2 ** 31)
    sizes = split(n_events, batches)
    rows = []
    t0 = time.monotonic()
    for i, size in enumerate(sizes):
        r = produce(stack, size, item, seed=base_seed + i)
        rows.append({"batch": i + 1, "requested": r["requested"], "produced": r["produced"],
                     "failed": r["failed"], "duration_s": r["duration_s"], "events_per_s": r["events_per_s"],
                     "by_partition": r["by_partition"], **({"error": r["error"]} if "error" in r else {})})
        log.info("load batch %d/%d: %d of %d events acknowledged in %.2fs (%.0f events/s), partitions %s",
                 i + 1, len(sizes), r["produced"], size, r["duration_s"], r["events_per_s"], r["by_partition"])
    acked_t = time.monotonic() - t0
    produced = sum(r["produced"] for r in rows)
    after, counted = wait_counted(stack, before["orders_total"] + produced,
                                  before["inventory_events_total"] + produced, count_timeout_s)
    counted_t = time.monotonic() - t0
    log.info("analytics %s the load %.2fs after the first batch (%.2fs after the last ack)",
             "counted" if counted else "did NOT count", counted_t, counted_t - acked_t)
    tally = read_back_inventory(cfg, inventory_start, expected_order_ids(sizes, item, base_seed))
    rec = reconcile(produced, tally["ours"], tally["duplicates"],
                    after["orders_total"] - before["orders_total"],
                    after["inventory_events_total"] - before["inventory_events_total"])
    log.info("reconciliation: %s", "all counts agree" if rec["reconciled"] else "; ".join(rec["mismatches"]))
    bulk_s = sum(r["duration_s"] for r in rows)
    partitions: dict[str, int] = {}
    for r in rows:
        for p, c in r["by_partition"].items():
            partitions[p] = partitions.get(p, 0) + c
    return {
        "batches": rows,
        "totals": {"requested": n_events, "produced": produced, "failed": sum(r["failed"] for r in rows),
                   "bulk_duration_s": round(bulk_s, 4),
                   "events_per_s": round(produced / bulk_s, 1) if bulk_s else 0.0,
                   "wall_s_until_acked": round(acked_t, 3),
                   "by_partition": dict(sorted(partitions.items()))},
        "analytics_counted": counted,
        "analytics_counted_after_s": round(counted_t, 3),
        "analytics_counted_after_last_ack_s": round(counted_t - acked_t, 3),
        "inventory_read_back": tally,
        "reconciliation": rec,
        "base_seed": base_seed,
    }


# -- 02: consumer lag --------------------------------------------------------------------------------
class LagSampler:
    """Samples a group's per-partition lag in a background thread; each sample carries the current phase."""

    def __init__(self, cfg, group: str = INVENTORY_GROUP, topics=(ORDER_EVENTS,), interval_s: float = 1.0,
                 on_sample=None):
        self.cfg, self.group, self.topics, self.interval_s = cfg, group, tuple(topics), interval_s
        self.phase: int | None = None
        self.samples: list[dict] = []
        # Called with the samples so far, on the caller's thread (a notebook's display must be
        # updated from the cell's own thread), whenever hold() or wait_for() sees new ones.
        self.on_sample = on_sample
        self._told = 0
        self._lock = threading.Lock()
        self._new_sample = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._t0 = 0.0

    def now(self) -> float:
        """Seconds since start(): the time axis of every sample."""
        return time.monotonic() - self._t0

    def start(self, phase: int) -> "LagSampler":
        self.phase = phase
        # The clients belong to the sampler thread alone (kafka-python clients are not thread-safe).
        self._admin = kafka_clients.admin(self.cfg, client_id="lab-lag-sampler")
        self._peek = kafka_clients.consumer(self.cfg, group_id=None, client_id="lab-lag-peek")
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="lag-sampler", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            due = 0.0
            while not self._stop.wait(max(0.0, due - self.now())):
                self._sample()
                # Fixed ticks from the start; a slow sample skips ticks instead of bunching them.
                due += self.interval_s
                while due < self.now():
                    due += self.interval_s
        except BaseException as exc:  # surfaced by stop() / hold(): the experiment must not go on blind
            self._error = exc
            log.exception("lag sampler failed")
        finally:
            self._admin.close()
            self._peek.close()

    def _sample(self) -> None:
        t, wall, phase = self.now(), time.time(), self.phase
        try:
            rows = group_lag(self._admin, self.group, self.topics, self._peek)
        except (KafkaError, KeyError) as exc:
            # A broker hiccup costs one sample, not the experiment; the gap shows in the readings.
            log.warning("lag sample skipped at t=%.1fs: %r", t, exc)
            return
        parts = [{"partition": r.partition, "end_offset": r.end_offset, "committed": r.committed,
                  "lag": r.lag, "lag_seconds": r.lag_seconds} for r in rows]
        sample = {"t": round(t, 3), "wall": round(wall, 3), "phase": phase, "partitions": parts,
                  "total_lag": sum(p["lag"] for p in parts),
                  "max_lag_seconds": max((p["lag_seconds"] or 0.0 for p in parts), default=0.0)}
        with self._new_sample:
            self.samples.append(sample)
            self._new_sample.notify_all()
        log.info("lag t=%5.1fs phase %s: total %5d  by partition %s  oldest unprocessed %.1fs",
                 t, phase, sample["total_lag"], [p["lag"] for p in parts], sample["max_lag_seconds"])

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise RuntimeError("the lag sampler failed; see the log above") from self._error

    def _tell(self) -> None:
        """Hand the samples so far to on_sample if new ones came (outside the lock: drawing takes a while)."""
        if self.on_sample is None:
            return
        with self._lock:
            if len(self.samples) == self._told:
                return
            self._told = len(self.samples)
            samples = list(self.samples)
        self.on_sample(samples)

    def hold(self, until_t: float) -> None:
        """Let the sampler record until until_t (seconds since start)."""
        while self.now() < until_t:
            self._raise_if_failed()
            self._tell()
            time.sleep(min(0.2, max(0.0, until_t - self.now())))
        self._raise_if_failed()
        self._tell()

    def wait_for(self, predicate, timeout_s: float) -> dict | None:
        """The first sample (recorded already or to come) that satisfies predicate, or None after timeout_s."""
        deadline = time.monotonic() + timeout_s
        seen = 0  # samples recorded before the call count too: a restart may have blocked a while
        while True:
            self._tell()
            with self._new_sample:
                for s in self.samples[seen:]:
                    if predicate(s):
                        return s
                seen = len(self.samples)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._raise_if_failed()
                self._new_sample.wait(min(remaining, 0.5))

    def stop(self) -> list[dict]:
        """Stop sampling; the recorded samples, in time order."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self._raise_if_failed()
        with self._lock:
            return list(self.samples)


def processed_between(a: dict, b: dict) -> int:
    """Events the group committed between samples a and b (a committed offset of None counts as 0)."""
    before = {p["partition"]: p["committed"] or 0 for p in a["partitions"]}
    return sum(max(0, (p["committed"] or 0) - before.get(p["partition"], 0)) for p in b["partitions"])


def drain_rates(samples: list[dict]) -> dict:
    """Events processed per second over samples: over the whole span, and while progress was being made."""
    if len(samples) < 2:
        return {"processed": 0, "duration_s": 0.0, "events_per_s": 0.0, "active_events_per_s": 0.0}
    first, last = samples[0], samples[-1]
    processed = processed_between(first, last)
    span = last["t"] - first["t"]
    # A phase starts with a restart (and, scaled out, a rebalance) and may end idle, caught up;
    # the active rate runs from the sample before the first progress to the last progress.
    moved = [i for i in range(1, len(samples)) if processed_between(samples[i - 1], samples[i]) > 0]
    active = 0.0
    if moved:
        start, end = samples[moved[0] - 1], samples[moved[-1]]
        active = processed_between(start, end) / (end["t"] - start["t"])
    return {"processed": processed, "duration_s": round(span, 3),
            "events_per_s": round(processed / span, 2) if span > 0 else 0.0,
            "active_events_per_s": round(active, 2)}


def annotate_status(samples: list[dict], window_s: float, stop_after_s: float) -> None:
    """Give each sample the group's status over the window ending at it (in place)."""
    for i, s in enumerate(samples):
        verdict = lagstatus.evaluate(samples, window_s, stop_after_s, at=i)
        s["status"] = verdict.status.name
        s["status_reason"] = verdict.reason


def summarize_phases(samples: list[dict], phases: list[dict], window_s: float, stop_after_s: float) -> list[dict]:
    """Per phase: drain rates, lag at start/peak/end, the oldest event's age, the status at its end."""
    out = []
    for ph in phases:
        idx = [i for i, s in enumerate(samples) if s["phase"] == ph["phase"]]
        row = dict(ph)
        if not idx:
            out.append({**row, "samples": 0})
            continue
        mine = [samples[i] for i in idx]
        row.update({
            "samples": len(mine),
            **drain_rates(mine),
            "lag_start": mine[0]["total_lag"],
            "lag_max": max(s["total_lag"] for s in mine),
            "lag_end": mine[-1]["total_lag"],
            "lag_seconds_max": round(max(s["max_lag_seconds"] for s in mine), 3),
            "status": lagstatus.evaluate(samples, window_s, stop_after_s, at=idx[-1]).as_dict(),
        })
        row.update(drain_model(row, partitions=len(mine[0]["partitions"])))
        out.append(row)
    return out


# -- the drain model: what the throttle allows, beside what was measured -------------------------------
def expected_drain_rate(instances: int, throttle_ms: int, partitions: int) -> float | None:
    """Events/s the throttle allows: instances x 1000 / throttle_ms, and no more consumers work than partitions.

    A group gives each partition to one member, so a fourth consumer on three partitions idles.
    None when unthrottled: then nothing but the machine sets the rate.
    """
    if throttle_ms <= 0:
        return None
    return min(instances, partitions) * 1000 / throttle_ms


def drain_time_s(lag: int, events_per_s: float | None) -> float | None:
    """Seconds until lag reaches 0 at this rate: 0 with no lag, None when nothing drains."""
    if lag <= 0:
        return 0.0
    if not events_per_s:
        return None
    return lag / events_per_s


def drain_model(phase: dict, partitions: int) -> dict:
    """A summarised phase's model figures: expected rate, measured/expected, the extra ms per event, drain time."""
    measured = phase.get("active_events_per_s", 0.0)
    expected = expected_drain_rate(phase["instances"], phase["throttle_ms"], partitions)
    working = min(phase["instances"], partitions)
    # What each event cost beyond the throttle's sleep (decoding, producing, the transaction commit
    # that closes every COMMIT_INTERVAL_MS of work): the part of the time the model leaves out.
    extra = 1000 * working / measured - phase["throttle_ms"] if expected and measured else None
    drained = drain_time_s(phase.get("lag_end", 0), measured)
    return {"consumers_at_work": working,
            "expected_events_per_s": round(expected, 2) if expected else None,
            "measured_vs_expected": round(measured / expected, 3) if expected else None,
            "extra_ms_per_event": round(extra, 1) if extra is not None else None,
            "drained_in_s_at_this_rate": round(drained, 1) if drained is not None else None}


def phase_label(instances: int, throttle_ms: int) -> str:
    who = f"{instances} consumer{'s' if instances > 1 else ''}"
    return f"{who}, {throttle_ms} ms/event" if throttle_ms else f"{who}, unthrottled"


def run_lag_experiment(stack: LabStack, *, throttle_ms: int, burst: int, sample_interval_s: float,
                       phase1_s: float, phase2_s: float, phase3_timeout_s: float, scale_out: int = 3,
                       status_window_s: float = 10.0, stop_after_s: float = 15.0, on_progress=None) -> dict:
    """Burst into a throttled inventory-consumer, scale it out, then unthrottle it; sample lag throughout.

    on_progress, if given, is called with the experiment so far (the shape of the result, phases
    still open) at each new sample: a notebook in JupyterLab redraws its chart with it.
    Whatever happens, inventory-consumer ends unthrottled with one instance.
    """
    wait_settled(stack)
    phases: list[dict] = []
    burst_result: dict | None = None
    burst_t: float | None = None

    def so_far(samples: list[dict]) -> None:
        now = round(sampler.now(), 3)
        on_progress({"group": INVENTORY_GROUP, "topic": ORDER_EVENTS, "burst": burst_result, "burst_t": burst_t,
                     "samples": samples, "live_t": now,
                     "phases": [{"end_t": now, **ph} for ph in phases]})

    sampler = LagSampler(stack.service_config(), interval_s=sample_interval_s,
                         on_sample=so_far if on_progress else None)

    def begin(phase: int, instances: int, throttle: int) -> float:
        sampler.phase = phase
        t = sampler.now()
        if phases:
            phases[-1]["end_t"] = round(t, 3)
        phases.append({"phase": phase, "label": phase_label(instances, throttle), "instances": instances,
                       "throttle_ms": throttle, "start_t": round(t, 3)})
        log.info("phase %d: %s", phase, phases[-1]["label"])
        return t

    caught_up_t = None
    try:
        sampler.start(phase=1)
        begin(1, 1, throttle_ms)
        stack.restart(INVENTORY, {"THROTTLE_MS": throttle_ms}, instances=1)
        burst_t = sampler.now()
        burst_result = produce(stack, burst)
        log.info("burst: %d events acknowledged in %.2fs", burst_result["produced"], burst_result["duration_s"])
        # Observation times count from when the restarted consumers are up: a compose restart
        # waits for the containers' healthchecks, seconds longer than the embedded one.
        sampler.hold(burst_t + phase1_s)

        begin(2, scale_out, throttle_ms)
        stack.restart(INVENTORY, {"THROTTLE_MS": throttle_ms}, instances=scale_out)
        sampler.hold(sampler.now() + phase2_s)

        begin(3, 1, 0)
        restore_services(stack)
        zero = sampler.wait_for(lambda s: s["phase"] == 3 and s["total_lag"] == 0, phase3_timeout_s)
        if zero is None:
            log.warning("lag did not reach 0 within %.0fs of phase 3", phase3_timeout_s)
        else:
            caught_up_t = zero["t"]
            # A few samples at zero, so the chart shows the group staying caught up.
            sampler.hold(caught_up_t + 3 * sample_interval_s)
        phases[-1]["end_t"] = round(sampler.now(), 3)
    finally:
        # Restore first: a failed sampler must not leave the consumer throttled.
        try:
            restore_services(stack)
        finally:
            samples = sampler.stop()

    annotate_status(samples, status_window_s, stop_after_s)
    summary = summarize_phases(samples, phases, status_window_s, stop_after_s)
    rates = {p["phase"]: p.get("active_events_per_s", 0.0) for p in summary}
    return {
        "group": INVENTORY_GROUP,
        "topic": ORDER_EVENTS,
        "burst": burst_result,
        "burst_t": round(burst_t, 3),
        "phases": summary,
        "samples": samples,
        "caught_up": caught_up_t is not None,
        "caught_up_t": caught_up_t,
        "scale_out_speedup": round(rates[2] / rates[1], 2) if rates.get(1) else None,
        "status_window_s": status_window_s,
        "stop_after_s": stop_after_s,
        "final_status": lagstatus.evaluate(samples, status_window_s, stop_after_s).as_dict(),
    }


# -- 03: replay ----------------------------------------------------------------------------------------
KEY_METRICS = ("orders_total", "inventory_events_total", "qty_total", "reserved", "rejected")


def true_counts(cfg, timeout_s: float = 300) -> dict:
    """The key metrics counted straight from both topics (read_committed, valid events only)."""
    c = kafka_clients.consumer(cfg, group_id=None, client_id="lab-truth", max_poll_records=5000)
    counts = dict.fromkeys(KEY_METRICS, 0)
    try:
        for topic in (ORDER_EVENTS, INVENTORY_EVENTS):
            for p in sorted(c.partitions_for_topic(topic) or ()):
                for rec in kafka_clients.read_range(c, TopicPartition(topic, p), timeout_s=timeout_s):
                    try:
                        if topic == ORDER_EVENTS:
                            ev = events.decode_order(rec.value)
                            counts["orders_total"] += 1
                            counts["qty_total"] += ev["qty"]
                        else:
                            ev = events.decode_inventory(rec.value)
                            counts["inventory_events_total"] += 1
                            counts[ev["status"]] += 1
                    except DecodeError:
                        continue  # dead letters: the fold does not count them either
    finally:
        c.close()
    return counts


def key_metrics(snapshot: dict) -> dict:
    return {k: snapshot[k] for k in KEY_METRICS}


def replay_summary(result: dict) -> dict:
    """POST /replay's answer without the bulky parts a report does not need twice."""
    return {k: result[k] for k in ("before", "after", "diff", "events_replayed", "duration_s",
                                   "events_per_s", "group_id")}


def run_replay(stack: LabStack) -> dict:
    """POST /replay on a settled stack, with the true counts read from the topics alongside."""
    wait_settled(stack)
    result = replay_summary(replay(stack))
    truth = true_counts(stack.service_config())
    log.info("replay: %d events in %.2fs (%.0f events/s), %d metrics differ",
             result["events_replayed"], result["duration_s"], result["events_per_s"], len(result["diff"]))
    return {**result, "truth": truth, "after_matches_truth": key_metrics(result["after"]) == truth}


def wait_live(stack: LabStack, timeout_s: float = 180) -> dict:
    """Wait until analytics has finished its start (rebuild or not) and consumes live."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            body = metrics(stack)
            if body["consumer"]["phase"] == "live":
                return body
        except (requests.RequestException, RuntimeError) as exc:
            log.debug("analytics not answering yet: %s", exc)
        if time.monotonic() > deadline:
            raise TimeoutError(f"analytics was not live within {timeout_s:.0f}s")
        time.sleep(POLL_S)


def run_replay_matters(stack: LabStack, post_reset_orders: int) -> dict:
    """Restart analytics without its rebuild, let it count new orders only, then show replay restoring the truth.

    Whatever happens, analytics ends restarted normally (rebuilding its state at start).
    """
    cfg = stack.service_config()
    wait_settled(stack)
    try:
        stack.restart(ANALYTICS, {"ANALYTICS_REBUILD": 0})
        reset = key_metrics(wait_live(stack))
        log.info("analytics restarted without rebuild: orders_total=%d", reset["orders_total"])
        produced = produce(stack, post_reset_orders)["produced"]
        wait_settled(stack)
        drifted = key_metrics(metrics(stack))
        truth = true_counts(cfg)
        log.info("live metrics drifted: orders_total=%d, true %d", drifted["orders_total"], truth["orders_total"])
        result = replay_summary(replay(stack))
    finally:
        restore_services(stack)
    restored = key_metrics(wait_settled(stack))
    log.info("analytics restarted normally: orders_total=%d", restored["orders_total"])
    return {
        "post_reset_orders": produced,
        "after_reset": reset,
        "drifted": drifted,
        "truth": truth,
        "replay": result,
        "replay_after_matches_truth": key_metrics(result["after"]) == truth,
        "restored": restored,
        "restored_matches_truth": restored == truth,
    }


# -- tables for notebooks and the report ---------------------------------------------------------------
def load_table(load: dict) -> pd.DataFrame:
    """One row per batch: size, acknowledged, duration, events/s and the partition spread."""
    rows = []
    for b in load["batches"]:
        rows.append({"batch": b["batch"], "requested": b["requested"], "produced": b["produced"],
                     "failed": b["failed"], "duration_s": b["duration_s"], "events_per_s": b["events_per_s"],
                     **{f"partition {p}": c for p, c in sorted(b["by_partition"].items())}})
    t = load["totals"]
    rows.append({"batch": "total", "requested": t["requested"], "produced": t["produced"], "failed": t["failed"],
                 "duration_s": t["bulk_duration_s"], "events_per_s": t["events_per_s"],
                 **{f"partition {p}": c for p, c in t["by_partition"].items()}})
    return pd.DataFrame(rows).set_index("batch")


def reconciliation_table(load: dict) -> pd.DataFrame:
    rec = load["reconciliation"]
    expected = rec["counts"]["produced (acknowledged)"]
    return pd.DataFrame([{"count": name, "value": value, "matches": "yes" if value == expected else "NO"}
                         for name, value in rec["counts"].items()]).set_index("count")


def _percent(ratio: float | None) -> str | None:
    return None if ratio is None else f"{ratio:.0%}"


def phase_table(lag: dict) -> pd.DataFrame:
    """One row per phase: measured drain rates beside the model's, lag, the oldest event's age, the status."""
    rows = []
    for p in lag["phases"]:
        rows.append({"phase": p["phase"], "consumers": p["label"],
                     "observed_s": round(p["end_t"] - p["start_t"], 1),
                     "processed": p.get("processed", 0), "drain_events_per_s": p.get("events_per_s", 0.0),
                     "drain_after_start_events_per_s": p.get("active_events_per_s", 0.0),
                     "model_events_per_s": p.get("expected_events_per_s"),
                     "measured_vs_model": _percent(p.get("measured_vs_expected")),
                     "lag_start": p.get("lag_start"), "lag_max": p.get("lag_max"), "lag_end": p.get("lag_end"),
                     "oldest_event_max_s": p.get("lag_seconds_max"),
                     "lag_end_drained_in_s": p.get("drained_in_s_at_this_rate"),
                     "status": p["status"]["status"] if "status" in p else None,
                     "why": p["status"]["reason"] if "status" in p else None})
    return pd.DataFrame(rows).set_index("phase")


def readings_table(lag: dict) -> pd.DataFrame:
    """Every lag reading: per-partition lag in offsets, the total, the oldest event's age, the time the
    total would take to drain at its phase's measured rate, the status."""
    rates = {p["phase"]: p.get("active_events_per_s", 0.0) for p in lag["phases"]}
    rows = []
    for s in lag["samples"]:
        row = {"t_s": s["t"], "phase": s["phase"]}
        row.update({f"lag p{p['partition']}": p["lag"] for p in s["partitions"]})
        row["total"] = s["total_lag"]
        row.update({f"age p{p['partition']} s": round(p["lag_seconds"] or 0.0, 1) for p in s["partitions"]})
        drained = drain_time_s(s["total_lag"], rates.get(s["phase"]))
        row["at phase rate, drained in s"] = None if drained is None else round(drained, 1)
        row["status"] = s.get("status")
        rows.append(row)
    return pd.DataFrame(rows)


def replay_table(result: dict) -> pd.DataFrame:
    """metric, before, after, delta: every flattened metric of a replay's before/after."""
    before, after = flatten(result["before"]), flatten(result["after"])
    rows = []
    for key in list(dict.fromkeys([*before, *after])):
        b, a = before.get(key), after.get(key)
        num = isinstance(a, (int, float)) and isinstance(b, (int, float))
        rows.append({"metric": key, "before": b, "after": a, "delta": (a - b) if num else None})
    return pd.DataFrame(rows).set_index("metric")


def drift_table(demo: dict) -> pd.DataFrame:
    """Key metrics through the demo: right after the reset, drifted live, true, replay, restored."""
    cols = {"live, just after the reset": demo["after_reset"], "live, after new orders": demo["drifted"],
            "true (read from the topics)": demo["truth"], "replay after": key_metrics(demo["replay"]["after"]),
            "live, after a normal restart": demo["restored"]}
    return pd.DataFrame(cols).rename_axis("metric")
