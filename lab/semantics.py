"""04: what a crash does to inventory-consumer's output under at-least-once and under exactly-once.

Per mode (PROCESSING_GUARANTEE): a throttled run with `kills` crashes (kill -9, restarted as
a supervisor would), then an unthrottled run without kills for the end-to-end throughput.
InventoryEvents accumulates across modes and runs, so each run reads back only its own window
(the high watermarks per partition before and after it), in read_committed and in
read_uncommitted, and counts only the orders it produced itself (seeded bulks: the ids are
known in advance). The figures come from pure functions over those records (tallies below).
"""
from __future__ import annotations

import logging
import random
import time
from collections import Counter

import pandas as pd
from kafka import TopicPartition
from kafka.errors import KafkaError

from lab import experiments
from lab.stack import INVENTORY, LabStack
from services.common import events, kafka_clients
from services.common.config import AT_LEAST_ONCE, EXACTLY_ONCE, PROCESSING_GUARANTEES, parse_guarantee
from services.common.events import DecodeError
from services.common.lag import group_lag
from services.common.topics import INVENTORY_EVENTS, INVENTORY_GROUP, ORDER_EVENTS

log = logging.getLogger(__name__)

ISOLATIONS = ("read_committed", "read_uncommitted")
POLL_S = 0.1
RESUME_TIMEOUT_S = 90.0   # a restarted consumer waits out the killed member's session (10 s) first


# -- pure: the figures ------------------------------------------------------------------------------
def parse_modes(text: str) -> list[str]:
    """'at_least_once, exactly_once' -> the modes in that order; an unknown or repeated one is refused."""
    modes = [parse_guarantee(m) for m in text.split(",") if m.strip()]
    if not modes or len(set(modes)) != len(modes):
        raise ValueError(f"modes={text!r}: give each of {', '.join(PROCESSING_GUARANTEES)} at most once")
    return modes


def duplicates(order_ids) -> dict:
    """Records beyond the first per order id, and how many order ids have more than one record."""
    counts = Counter(order_ids)
    return {"duplicates": sum(n - 1 for n in counts.values() if n > 1),
            "orders_doubled": sum(1 for n in counts.values() if n > 1)}


def stock_drift(records: list[dict]) -> dict:
    """Stock used in the window against the units its distinct orders reserved.

    records: InventoryEvents of the window, in offset order per partition. Each warehouse and
    item starts the window at its first record's stock_left plus what that record reserved;
    stock_used sums start minus the last stock_left. reserved_units counts each order once (its
    first record). drift = stock_used - reserved_units: 0 when each order was reserved once, the
    doubled orders' qty when a redelivered order was reserved again.
    """
    first: dict = {}
    last: dict = {}
    reserved_units = 0
    seen: set[str] = set()
    for ev in records:
        key = (ev["warehouse"], ev["item"])
        if key not in first:
            first[key] = ev["stock_left"] + (ev["qty"] if ev["status"] == "reserved" else 0)
        last[key] = ev["stock_left"]
        if ev["order_id"] not in seen:
            seen.add(ev["order_id"])
            if ev["status"] == "reserved":
                reserved_units += ev["qty"]
    used = sum(first[k] - last[k] for k in first)
    return {"stock_used": used, "reserved_units": reserved_units, "drift": used - reserved_units}


def tally(expected_ids: set[str], reads: dict[str, list[dict]]) -> dict:
    """The figures of one run from its window in both isolation levels (each a list of decoded events).

    Only the run's own orders count; anything else in the window is reported as foreign.
    """
    out: dict = {}
    for isolation, records in reads.items():
        ours = [ev for ev in records if ev["order_id"] in expected_ids]
        out[isolation] = {"records": len(ours), "foreign": len(records) - len(ours),
                          "orders": len({ev["order_id"] for ev in ours}), **duplicates(ev["order_id"] for ev in ours)}
    committed = [ev for ev in reads["read_committed"] if ev["order_id"] in expected_ids]
    seen = {ev["order_id"] for ev in committed}
    out["missing"] = len(expected_ids - seen)
    out["stock"] = stock_drift(committed)
    # What read_committed hides: records of aborted transactions (exactly-once's crashed batches).
    out["aborted_records"] = out["read_uncommitted"]["records"] - out["read_committed"]["records"]
    return out


def markers(start: dict[int, int], end: dict[int, int], records: int) -> int:
    """Offsets of a window that hold no record: transaction markers (a commit or abort takes one per partition).

    A consumer without transactions writes none, so 0 here says no transaction was used.
    """
    return sum(end[p] - start[p] for p in start) - records


def timeline(entries: list[dict], t0_ms: int, committed_keys: set) -> dict:
    """The output records of a run over time: seconds since t0 in write order, which were aborted, which doubled."""
    entries = sorted(entries, key=lambda e: (e["timestamp"], e["partition"], e["offset"]))
    seen: set[str] = set()
    t, aborted, doubled = [], [], []
    for i, e in enumerate(entries):
        t.append(round((e["timestamp"] - t0_ms) / 1000, 3))
        if (e["partition"], e["offset"]) not in committed_keys:
            aborted.append(i)
        elif e["order_id"] in seen:
            doubled.append(i)
        if (e["partition"], e["offset"]) in committed_keys:
            seen.add(e["order_id"])
    return {"t": t, "aborted": aborted, "duplicate": doubled}


def verdict(doc: dict) -> list[str]:
    """One plain line per mode: what the crashes did to its output."""
    lines = []
    for m in doc["modes"]:
        k = m["kill_run"]
        rc, ru = k["read_committed"], k["read_uncommitted"]
        kills = f"{m['kills_done']} kill{'s' if m['kills_done'] != 1 else ''}"
        if m["kills_done"] == 0:
            what = "no kill landed mid-stream in this run (the stream ended first)"
        elif rc["duplicates"]:
            what = (f"{rc['duplicates']} duplicate records ({rc['orders_doubled']} orders processed twice) "
                    f"in read_committed, stock drift {k['stock']['drift']} units")
        else:
            what = "no duplicate in read_committed, no stock drift" if k["stock"]["drift"] == 0 else \
                f"no duplicate in read_committed, but stock drift {k['stock']['drift']} units"
            if m["mode"] == AT_LEAST_ONCE:
                what += " (no kill fell between a batch's writes and its commit this time)"
        if ru["duplicates"] > rc["duplicates"]:
            what += (f"; read_uncommitted sees {ru['duplicates']} duplicates: the {k['aborted_records']} records "
                     "of aborted transactions")
        lines.append(f"{m['mode']}: {kills}, {what}; {k['missing']} missing. "
                     f"Without kills: {m['throughput']['events_per_s']:,.0f} events/s end to end.")
    return lines


def semantics_table(doc: dict) -> pd.DataFrame:
    """One row per mode: kills, duplicates in both isolation levels, missing, stock drift, throughput."""
    rows = []
    for m in doc["modes"]:
        k = m["kill_run"]
        rows.append({"mode": m["mode"], "kills": m["kills_done"], "orders": k["produced"],
                     "records (committed)": k["read_committed"]["records"],
                     "duplicates (read_committed)": k["read_committed"]["duplicates"],
                     "duplicates (read_uncommitted)": k["read_uncommitted"]["duplicates"],
                     "aborted records": k["aborted_records"], "txn markers": k["markers"], "missing": k["missing"],
                     "stock used": k["stock"]["stock_used"], "reserved units": k["stock"]["reserved_units"],
                     "stock drift": k["stock"]["drift"],
                     "e2e events/s (no kills)": m["throughput"]["events_per_s"]})
    return pd.DataFrame(rows).set_index("mode")


# -- Kafka: offsets, reads, the group's progress ------------------------------------------------------
def high_watermarks(cfg, topic: str = INVENTORY_EVENTS) -> dict[int, int]:
    """{partition: high watermark}: the end of the log, open transactions included."""
    c = kafka_clients.consumer(cfg, group_id=None, client_id="lab-semantics-offsets",
                               isolation_level="read_uncommitted")
    try:
        tps = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic) or ())]
        return {tp.partition: off for tp, off in kafka_clients.end_offsets(c, tps).items()}
    finally:
        c.close()


def read_window(cfg, start: dict[int, int], end: dict[int, int], isolation: str) -> list[dict]:
    """InventoryEvents between two sets of offsets, decoded, in offset order per partition, with where each sits."""
    c = kafka_clients.consumer(cfg, group_id=None, client_id=f"lab-semantics-{isolation}",
                               isolation_level=isolation, max_poll_records=5000)
    out = []
    try:
        for p in sorted(start):
            if end[p] <= start[p]:
                continue
            for rec in kafka_clients.read_range(c, TopicPartition(INVENTORY_EVENTS, p), start[p], end[p]):
                try:
                    ev = events.decode_inventory(rec.value)
                except DecodeError:
                    continue
                out.append({**ev, "partition": rec.partition, "offset": rec.offset, "timestamp": rec.timestamp})
    finally:
        c.close()
    return out


class GroupWatch:
    """inventory-grp's committed offsets on OrderEvents, read from the broker (nothing the consumer says itself)."""

    def __init__(self, cfg):
        self.admin = kafka_clients.admin(cfg, client_id="lab-semantics-watch")

    def read(self) -> tuple[int, int]:
        """(sum of committed offsets, total lag); a moment the broker cannot answer reads as no progress."""
        try:
            rows = group_lag(self.admin, INVENTORY_GROUP, [ORDER_EVENTS])
        except (KafkaError, KeyError) as exc:
            log.debug("group offsets not readable now: %r", exc)
            return -1, -1
        return sum(r.committed or 0 for r in rows), sum(r.lag for r in rows)

    def wait(self, predicate, timeout_s: float, what: str) -> tuple[int, int]:
        deadline = time.monotonic() + timeout_s
        while True:
            committed, lag = self.read()
            if committed >= 0 and predicate(committed, lag):
                return committed, lag
            if time.monotonic() > deadline:
                raise TimeoutError(f"{INVENTORY_GROUP}: {what} did not happen within {timeout_s:.0f}s "
                                   f"(committed {committed}, lag {lag})")
            time.sleep(POLL_S)

    def close(self) -> None:
        self.admin.close()


def overrides_for(mode: str, throttle_ms: int = 0) -> dict:
    """The restart overrides of a mode: exactly-once is the default, so it needs none."""
    return {**({"PROCESSING_GUARANTEE": mode} if mode != EXACTLY_ONCE else {}),
            **({"THROTTLE_MS": throttle_ms} if throttle_ms else {})}


def seeded_burst(stack: LabStack, n: int, item: str = events.MIXED) -> tuple[dict, set[str]]:
    """POST /orders/bulk with a fresh seed: the answer and the order ids it produced."""
    seed = random.randrange(2 ** 31)
    result = experiments.produce(stack, n, item, seed=seed)
    return result, {ev["order_id"] for ev in events.bulk_orders(n, item, seed=seed)}


def drill_item(mode: str) -> str:
    """An item of its own for one crash run, ordered one unit at a time.

    The catalog's stock runs out over a few lab runs (2000 units per item and warehouse, and
    the topics are kept), and a redelivered order rejected for lack of stock uses none: the
    drift would hide. A fresh item starts with INITIAL_STOCK in every warehouse, so each order
    reserved twice shows as exactly one unit of drift.
    """
    return f"crash-{mode}-{random.randrange(16 ** 6):06x}"


# -- the runs -------------------------------------------------------------------------------------------
def kill_run(stack: LabStack, watch: GroupWatch, mode: str, burst: int, kills: int, kill_interval_s: float,
             throttle_ms: int, drain_timeout_s: float) -> dict:
    """Burst into a throttled consumer in `mode`, kill -9 it `kills` times while it processes, read the window back."""
    cfg = stack.service_config()
    stack.restart(INVENTORY, overrides_for(mode, throttle_ms))
    watch.wait(lambda c, lag: lag == 0, drain_timeout_s, "catching up before the run")
    start = high_watermarks(cfg)
    t0 = time.time()
    committed0, _ = watch.read()
    item = drill_item(mode)
    produced, ids = seeded_burst(stack, burst, item)
    log.info("%s: burst of %d orders acknowledged in %.2fs", mode, produced["produced"], produced["duration_s"])
    kill_times = []
    for k in range(kills):
        # Each kill lands while the consumer processes: after it has committed since its (re)start.
        watch.wait(lambda c, lag, since=committed0: c > since or lag == 0, RESUME_TIMEOUT_S,
                   "progress after the restart")
        # Plus a random part of one batch: counted from a commit, a whole number of batches
        # (2 s at 5 ms/event is ten 200 ms batches) lands every kill just after the next commit,
        # where at-least-once has nothing in flight to redeliver.
        time.sleep(kill_interval_s + random.uniform(0, cfg.commit_interval_ms / 1000))
        _, lag = watch.wait(lambda c, lag: True, 30, "an offsets reading")
        if lag == 0:
            log.info("%s: the stream ended before kill %d of %d", mode, k + 1, kills)
            break
        crash_restarts = getattr(stack, "kind", "") == "compose"
        if crash_restarts:
            # In compose the supervisor is Docker's restart policy (on-failure): kill the main
            # process from the host as a crash would (`docker kill` counts as a stop, never restarted).
            stack.crash(INVENTORY)
        elif not stack.kill(INVENTORY):
            raise RuntimeError(f"{INVENTORY} was not running at kill {k + 1}")
        kill_times.append(round(time.time() - t0, 3))
        # Read after the kill: the dead instance commits nothing more, so any advance is its successor's.
        committed0, lag = watch.wait(lambda c, lag: True, 30, "an offsets reading")
        log.info("%s: kill -9 %d/%d at t=%.1fs with %d orders waiting", mode, k + 1, kills, kill_times[-1], lag)
        if not crash_restarts:
            stack.start_instance(INVENTORY, 0)   # as a crash-restarting supervisor would
    watch.wait(lambda c, lag: lag == 0, drain_timeout_s, "catching up after the kills")
    caught_up_s = time.time() - t0
    end = high_watermarks(cfg)
    reads = {iso: read_window(cfg, start, end, iso) for iso in ISOLATIONS}
    figures = tally(ids, reads)
    committed_keys = {(e["partition"], e["offset"]) for e in reads["read_committed"]}
    ours = [e for e in reads["read_uncommitted"] if e["order_id"] in ids]
    log.info("%s: %d kills; duplicates read_committed %d, read_uncommitted %d; missing %d; stock drift %d",
             mode, len(kill_times), figures["read_committed"]["duplicates"], figures["read_uncommitted"]["duplicates"],
             figures["missing"], figures["stock"]["drift"])
    return {"produced": produced["produced"], "item": item, "kill_times_s": kill_times,
            "caught_up_s": round(caught_up_s, 3),
            "window": {"start": start, "end": end}, **figures,
            "markers": markers(start, end, len(reads["read_uncommitted"])),
            "timeline": timeline(ours, int(t0 * 1000), committed_keys)}


def throughput_run(stack: LabStack, watch: GroupWatch, mode: str, burst: int, drain_timeout_s: float) -> dict:
    """The same burst into an unthrottled consumer in `mode`, no kills: acknowledged-to-processed, end to end."""
    cfg = stack.service_config()
    stack.restart(INVENTORY, overrides_for(mode))
    watch.wait(lambda c, lag: lag == 0, drain_timeout_s, "catching up before the run")
    # One order first: the restarted consumer has joined and loaded its stock (at_least_once reads
    # the whole history) once it is processed, so the timed burst measures processing alone.
    experiments.produce(stack, 1)
    watch.wait(lambda c, lag: lag == 0, drain_timeout_s, "the warm-up order")
    start = high_watermarks(cfg)
    t0 = time.monotonic()
    produced, ids = seeded_burst(stack, burst)
    watch.wait(lambda c, lag: lag == 0, drain_timeout_s, "processing the burst")
    wall = time.monotonic() - t0
    figures = tally(ids, {"read_committed": read_window(cfg, start, high_watermarks(cfg), "read_committed"),
                          "read_uncommitted": []})
    n = figures["read_committed"]["orders"]
    log.info("%s: %d orders end to end in %.2fs (%.0f events/s)", mode, n, wall, n / wall if wall else 0.0)
    return {"produced": produced["produced"], "orders_out": n, "duplicates": figures["read_committed"]["duplicates"],
            "missing": figures["missing"], "duration_s": round(wall, 3),
            "events_per_s": round(n / wall, 1) if wall > 0 else 0.0}


def run_semantics_experiment(stack: LabStack, *, burst: int, kills: int, kill_interval_s: float, throttle_ms: int,
                             modes: str = f"{AT_LEAST_ONCE},{EXACTLY_ONCE}") -> dict:
    """Each mode: a crash run and a throughput run. Whatever happens, inventory-consumer ends exactly-once, x1."""
    order = parse_modes(modes)
    if burst < 1 or kills < 0 or kill_interval_s < 0 or throttle_ms < 0:
        raise ValueError(f"need burst >= 1 and kills, kill_interval_s, throttle_ms >= 0; got burst={burst}, "
                         f"kills={kills}, kill_interval_s={kill_interval_s}, throttle_ms={throttle_ms}")
    # Bound on every wait for lag 0: the throttled burst itself, a session timeout per kill, and margin.
    drain_timeout_s = burst * throttle_ms / 1000 * 2 + 20 * kills + 120
    experiments.wait_settled(stack)
    watch = GroupWatch(stack.service_config())
    out = []
    try:
        for mode in order:
            log.info("mode %s", mode)
            crash = kill_run(stack, watch, mode, burst, kills, kill_interval_s, throttle_ms, drain_timeout_s)
            clean = throughput_run(stack, watch, mode, burst, drain_timeout_s)
            out.append({"mode": mode, "kills_done": len(crash["kill_times_s"]), "kill_run": crash, "throughput": clean})
    finally:
        try:
            experiments.restore_services(stack)
        finally:
            watch.close()
    return {"group": INVENTORY_GROUP, "topic": INVENTORY_EVENTS, "throttle_ms": throttle_ms, "burst": burst,
            "kills": kills, "modes": out}
