"""Running the sections against a stack, and the `./run_all.sh bench` command line."""
from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import shutil
import time
from dataclasses import asdict, replace
from pathlib import Path

from lab import paths
from lab.bench import sections as s
from lab.bench.clients import bench_clients
from lab.bench.harness import Lab, Plan, drop_scratch, ensure_scratch_topics
from lab.bench.report import machine, table, targets
from lab.bench.scale import bench_scale
from lab.stack import INVENTORY, KAFKA, Stack, StackError
from services.common.runtime import freeze_startup_heap

# clients reads replay's history before the later sections make it longer.
SECTIONS = ("e2e", "replay", "clients", "orders", "inventory", "bulk", "perf")
ALL_SECTIONS = (*SECTIONS, "scale")  # scale is opt-in (--scale): its first run writes a million events


RUNNERS = {"e2e": s.bench_e2e, "replay": s.bench_replay, "orders": s.bench_orders, "inventory": s.bench_inventory,
           "bulk": s.bench_bulk, "perf": s.bench_perf, "clients": bench_clients,
           "scale": bench_scale}


def run(stack: Stack, plan: Plan, sections=SECTIONS, say=print) -> dict:
    """Run the sections against a running stack and return the report (nothing written)."""
    started = dt.datetime.now(dt.timezone.utc)
    # The raw loops run here, beside the many objects of the bench's own imports. The services
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
        for name in ALL_SECTIONS:
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


def orders_written(plan: Plan, sections=SECTIONS) -> int:
    """About how many orders a run writes to OrderEvents (single orders not counted)."""
    total = 0
    if "bulk" in sections:
        for n in plan.bulk_sizes:
            reps = plan.bulk_reps_largest if n == max(plan.bulk_sizes) else plan.reps
            inner = s.bulk_inner(n, plan.bulk_sizes, plan.bulk_inner_most)
            total += 2 * reps * inner * n
    if "e2e" in sections:
        total += plan.reps * plan.e2e_n + min(plan.e2e_n, 500)
    elif "replay" in sections or "clients" in sections:
        total += plan.reps * plan.e2e_n  # at most: seed_for_replay tops up to this
    if "clients" in sections:
        total += plan.clients_reps * plan.clients_n  # the service's runs; the raw ones write to a scratch topic
    if "inventory" in sections:
        total += plan.inventory_reps * plan.inventory_n
    return total


def main(argv: list[str], stack: Stack) -> int:
    """./run_all.sh bench [--quick] [--reps N] [--only a,b] [--scale] [--out FILE]"""
    from lab import bench  # the package's docstring is the command's description
    p = argparse.ArgumentParser(prog="run_all.sh bench", description=bench.__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke-test sizes, one repetition")
    p.add_argument("--reps", type=int, help="repetitions of each timed run (default 5; quick 1)")
    p.add_argument("--only", help=f"comma-separated sections of {','.join(ALL_SECTIONS)}")
    p.add_argument("--scale", action="store_true",
                   help="add the scale section: restarts and replay with 1M events of history (written once, "
                        "kept in LAB_HOME/bench-scale)")
    p.add_argument("--out", type=Path, default=paths.REPORTS_DIR / "bench.json",
                   help="where the JSON goes (default $LAB_REPORTS_DIR or reports/, bench.json)")
    args = p.parse_args(argv)
    plan = Plan.quick_plan() if args.quick else Plan()
    if args.reps:
        plan = replace(plan, reps=args.reps, bulk_reps_largest=min(plan.bulk_reps_largest, args.reps),
                       order_reps=min(plan.order_reps, args.reps), scale_reps=min(plan.scale_reps, args.reps),
                       inventory_reps=min(plan.inventory_reps, args.reps),
                       perf_reps=min(plan.perf_reps, args.reps), clients_reps=min(plan.clients_reps, args.reps))
    sections = tuple(s.strip() for s in args.only.split(",")) if args.only else SECTIONS
    if args.scale and "scale" not in sections:
        sections = (*sections, "scale")
    unknown = set(sections) - set(ALL_SECTIONS)
    if unknown:
        p.error(f"unknown sections {sorted(unknown)}; choose from {','.join(ALL_SECTIONS)}")
    if "scale" in sections and not plan.scale_home:
        # Beside the fresh stack's folder, which is wiped: the history outlives the run.
        plan = replace(plan, scale_home=str(stack.home / "bench-scale"))

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
