"""The scale section (--scale): restarts, replay and memory with a long history, as ratios over a short one.

Each history size has a stack of its own under a folder that outlives the run (LAB_HOME/bench-scale/):
the history is written once and reused. The stacks run side by side on free ports, so each
ratio pairs runs taken moments apart on the same loaded machine.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import requests

from lab import paths
from lab.bench.harness import INVENTORY_GROUP, Lab, RssSampler
from lab.bench.stats import pair_median, summary
from lab.stack import ANALYTICS, INVENTORY, Stack
from services.common import events
from services.common.topics import INVENTORY_EVENTS, ORDER_EVENTS

HISTORY_FILE = "bench-history.json"  # in each stack's home: the orders it holds, written by write_history
PORTS_FILE = "bench-ports.json"      # the ports its broker was formatted with, kept for the next run
BROKER_PORTS = ("kafka_port", "controller_port")


# Below Linux's ephemeral range (32768-60999): a port picked there can be taken by any client's
# outgoing connection before the service binds it.
PORT_RANGE = (20_000, 32_000)


def port_free(port: int) -> bool:
    with socket.socket() as s:
        # As the servers bind: a port whose last connection is in TIME_WAIT is free to them.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_ports(n: int, taken=(), rng=random) -> list[int]:
    """n distinct free loopback ports in PORT_RANGE, none of them in taken."""
    out: list[int] = []
    while len(out) < n:
        port = rng.randrange(*PORT_RANGE)
        if port not in out and port not in taken and port_free(port):
            out.append(port)
    return out


def history_stack(parent: Stack, root: Path, n_events: int, say, taken=()) -> Stack:
    """A one-broker plain stack of its own for a history of n_events; its broker keeps the ports it was formatted with.

    A single KRaft node records its controller's address in its metadata log, so the broker's
    ports stay; the HTTP ports are picked afresh each run. Should another process hold a
    broker port now, the history is written again on new ports.
    """
    home = root / f"{n_events}-events"
    ports_file = home / PORTS_FILE
    say_here = lambda msg: say(f"  [scale {n_events:,}] {msg}")  # noqa: E731
    ports = stored_ports(home)
    if ports is not None:
        # A run that was cut off may have left it running, on HTTP ports of its own.
        replace(parent, home=home, brokers=1, broker_ports=(), secure=False, external_bootstrap=None,
                progress=say_here, **ports).down()
        if not all(port_free(p) for p in ports.values()):
            say_here(f"a broker port of {ports} is in use by another process: writing this history again")
            shutil.rmtree(home)
            ports = None
    if ports is None:
        ports = dict(zip(BROKER_PORTS, free_ports(2, taken), strict=True))
        home.mkdir(parents=True, exist_ok=True)
        ports_file.write_text(json.dumps(ports))
    http = dict(zip(("producer_port", "analytics_port"), free_ports(2, (*taken, *ports.values())), strict=True))
    return replace(parent, home=home, brokers=1, broker_ports=(), secure=False, external_bootstrap=None,
                   progress=say_here, **ports, **http)


def stored_ports(home: Path) -> dict | None:
    """The broker ports a history stack's home was formatted with, or None for a new one."""
    f = home / PORTS_FILE
    return {k: json.loads(f.read_text())[k] for k in BROKER_PORTS} if f.exists() else None


def write_history(lab: Lab, n_events: int) -> dict:
    """Orders through POST /orders/bulk until OrderEvents + InventoryEvents hold n_events; reused when present."""
    marker = lab.stack.home / HISTORY_FILE
    have = json.loads(marker.read_text())["orders"] if marker.exists() else 0
    want = n_events // 2  # each order is one OrderEvent and one InventoryEvent
    t0, written = time.monotonic(), 0
    if have < want:
        lab.say(f"  scale: writing {want - have:,} orders into {lab.stack.home} (once; later runs reuse them)")
    while have < want:
        n = min(want - have, lab.cfg.max_bulk_n)
        r, _ = lab.post(lab.stack.producer_url + "/orders/bulk", {"n": n, "item": events.MIXED})
        if r.status_code != 201:
            raise RuntimeError(f"/orders/bulk answered {r.status_code}: {r.text[:300]}")
        have, written = have + n, written + n
        marker.write_text(json.dumps({"orders": have}))
    if written:
        lab.settle(timeout_s=3600)  # the offsets below count the inventory events of these orders too
    return {"orders": have, "written_orders": written, "written_s": round(time.monotonic() - t0, 1),
            "offsets": sum(lab.end_offsets([ORDER_EVENTS, INVENTORY_EVENTS]).values())}


def restart_analytics(lab: Lab, rss_peak: dict | None = None, timeout_s: float = 1800) -> dict:
    """SIGTERM analytics-consumer, start it, time until /metrics answers live (its restart rebuild done)."""
    lab.stop_service(ANALYTICS)
    t0 = time.perf_counter()
    lab.start_service(ANALYTICS)
    with RssSampler({ANALYTICS: lab.pids(ANALYTICS)}) as rss:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                r = lab.http.get(lab.stack.analytics_url + "/metrics", timeout=5)
                if r.ok and r.json()["consumer"]["phase"] == "live":
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"analytics was not live {timeout_s}s after its start")
            time.sleep(0.05)
        seconds = time.perf_counter() - t0
    if rss_peak is not None:
        rss_peak[ANALYTICS] = max(rss_peak[ANALYTICS], rss.peak_bytes[ANALYTICS])
    return {"seconds": seconds}


def restart_inventory(lab: Lab, timeout_s: float = 1800) -> dict:
    """SIGTERM inventory-consumer, write one order, start it, time until its group has committed that order."""
    lab.stop_service(INVENTORY)
    ev = events.new_order("pizza", 1)
    lab.producer.send(ORDER_EVENTS, key=ev["order_id"].encode(), value=events.encode(ev)).get(timeout=30)
    end = lab.end_offsets([ORDER_EVENTS])
    t0 = time.perf_counter()
    lab.start_service(INVENTORY)
    deadline = time.monotonic() + timeout_s
    while any(c < end[tp] for tp, c in lab.committed(INVENTORY_GROUP, list(end)).items()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"inventory did not process an order within {timeout_s}s of its start")
        time.sleep(0.05)
    return {"seconds": time.perf_counter() - t0}


def replay_run(lab: Lab, rss_peak: dict | None = None) -> dict:
    """POST /replay: events/s as the client sees it."""
    with RssSampler({ANALYTICS: lab.pids(ANALYTICS)}) as rss:
        r, seconds = lab.post(lab.stack.analytics_url + "/replay", timeout=3600)
    if r.status_code != 200:
        raise RuntimeError(f"/replay answered {r.status_code}: {r.text[:300]}")
    if rss_peak is not None:
        rss_peak[ANALYTICS] = max(rss_peak[ANALYTICS], rss.peak_bytes[ANALYTICS])
    n = r.json()["events_replayed"]
    return {"events": n, "seconds": seconds, "events_per_s": n / seconds}


def verify_run(stack: Stack, timeout_s: float = 1800) -> dict:
    """./run_all.sh verify against stack in a process of its own: its time and peak RSS."""
    # The services' own settings too (INITIAL_STOCK): verify reconciles against the stock they started with.
    env = {**os.environ, **{k: str(v) for k, v in stack.env.items()}, **stack.child_environment(),
           "PYTHONPATH": str(paths.ROOT)}
    env = {k: v for k, v in env.items() if v != ""}  # an empty value means unset (child_environment)
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "lab.cli", "verify", "--json"], cwd=paths.ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with RssSampler({"verify": [proc.pid]}) as rss:
        try:
            out, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise
    seconds = time.perf_counter() - t0
    if proc.returncode not in (0, 1):  # 1 is a reconciliation that found a mismatch: still measured
        raise RuntimeError(f"verify failed ({proc.returncode}): {err[-2000:]}")
    result = json.loads(out)
    return {"seconds": seconds, "peak_rss_mb": round(rss.peak_bytes["verify"] / 2**20, 1), "ok": result["ok"],
            "records": {t: result[t]["records"] for t in (ORDER_EVENTS, INVENTORY_EVENTS)},
            **({} if result["ok"] else {"reconciliation": result})}


def each(work, keys) -> None:
    """work(key) for every key at once, on threads; the first failure is raised once all have ended."""
    with ThreadPoolExecutor(max_workers=len(keys)) as pool:
        futures = [pool.submit(work, k) for k in keys]
    for f in futures:
        f.result()


def bench_scale(lab: Lab) -> dict:
    """Restart times at the largest history over the smallest, replay rate at the largest over the middle one."""
    if lab.stack.external_bootstrap:
        reason = "KAFKA_BOOTSTRAP names a cluster of its own: the scale stacks are embedded ones"
        lab.say(f"  scale: skipped, {reason}")
        return {"skipped": reason}
    small, mid, large = lab.plan.scale_events
    root = Path(lab.plan.scale_home) if lab.plan.scale_home else lab.stack.home / "bench-scale"
    stacks: dict[int, Stack] = {}
    kept = [p for home in root.glob("*-events") for p in (stored_ports(home) or {}).values()]
    for n in dict.fromkeys((small, mid, large)):  # the quick plan's small is its mid: one stack
        taken = {*kept, *(p for st in (lab.stack, *stacks.values())
                          for p in (st.kafka_port, st.controller_port, st.producer_port, st.analytics_port))}
        stacks[n] = history_stack(lab.stack, root, n, lab.say, taken)
    labs: dict[int, Lab] = {}
    history = {}

    def prepare(n: int) -> None:
        stacks[n].up()
        labs[n] = Lab(stacks[n], lab.plan, lab.say)
        history[str(n)] = write_history(labs[n], n)
        labs[n].settle(timeout_s=3600)  # each restart measured starts from idle, caught-up consumers
    try:
        # Side by side: most of a start is waiting (the JVM, the services' first connection).
        each(prepare, stacks)
        rss_peak = {ANALYTICS: 0}
        analytics = {small: [], large: []}
        inventory = {small: [], large: []}
        replay = {mid: [], large: []}
        for rep in range(lab.plan.scale_reps):
            pair = (small, large) if rep % 2 == 0 else (large, small)
            for n in pair:
                analytics[n].append(restart_analytics(labs[n], rss_peak if n == large else None))
            for n in pair:
                inventory[n].append(restart_inventory(labs[n]))
            for n in ((mid, large) if rep % 2 == 0 else (large, mid)):
                labs[n].settle()
                replay[n].append(replay_run(labs[n], rss_peak if n == large else None))
            lab.say(f"  scale rep {rep + 1}: analytics restart {analytics[small][-1]['seconds']:.2f}s at "
                    f"{small:,} events, {analytics[large][-1]['seconds']:.2f}s at {large:,}; inventory restart "
                    f"{inventory[small][-1]['seconds']:.2f}s / {inventory[large][-1]['seconds']:.2f}s; replay "
                    f"{replay[mid][-1]['events_per_s']:.0f} ev/s at {mid:,}, {replay[large][-1]['events_per_s']:.0f} "
                    f"at {large:,}")
        verify = verify_run(stacks[large])
        lab.say(f"  scale: verify at {large:,} events took {verify['seconds']:.1f}s, peak RSS "
                f"{verify['peak_rss_mb']:.0f} MB")
    finally:
        for one in labs.values():
            one.close()
        each(lambda n: stacks[n].down(), stacks)  # the data stays for the next run
    return {
        "events": {"small": small, "mid": mid, "large": large}, "root": str(root), "history": history,
        "analytics_restart_s": {str(n): summary(r["seconds"] for r in analytics[n]) for n in analytics},
        "analytics_restart_ratio": pair_median(analytics[large], analytics[small], "seconds"),
        "inventory_restart_s": {str(n): summary(r["seconds"] for r in inventory[n]) for n in inventory},
        "inventory_restart_ratio": pair_median(inventory[large], inventory[small], "seconds"),
        "replay_events_per_s": {str(n): summary(r["events_per_s"] for r in replay[n]) for n in replay},
        "replay_ratio": pair_median(replay[large], replay[mid], "events_per_s"),
        "analytics_peak_rss_mb": round(rss_peak[ANALYTICS] / 2**20, 1),
        "verify": verify,
        "runs": {"analytics": analytics, "inventory": inventory, "replay": replay},
    }
