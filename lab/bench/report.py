"""Targets, the markdown table and the machine record of a bench report."""
from __future__ import annotations

import os
import platform
import subprocess

import psutil

from lab import paths
from lab.bench.stats import ratio
from lab.broker import kafka_version
from lab.stack import ANALYTICS, INVENTORY, KAFKA, PRODUCER, Stack


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
        # shares the cores with the consumers working through it, a short one does not, so any
        # client's time per event grows with n here (docs/benchmarks.md).
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
    if "scale" in results and "skipped" not in results["scale"]:
        sc = results["scale"]
        ev = sc["events"]
        add(f"analytics restart at {ev['large']:,} events / at {ev['small']:,}", sc["analytics_restart_ratio"], "<=", 2)
        add(f"inventory restart at {ev['large']:,} events / at {ev['small']:,}", sc["inventory_restart_ratio"], "<=", 2)
        add(f"replay events/s at {ev['large']:,} events / at {ev['mid']:,}", sc["replay_ratio"], ">=", 0.8)
    if "orders" in results and "8" in results["orders"]:
        add("POST /order p99 at concurrency 8, ms", results["orders"]["8"]["service"]["p99_ms"]["median"], "<=", 25)
    return rows


def _f(x, digits=0) -> str:
    if x is None:
        return "-"
    return f"{x:,.{digits}f}"


def table(report: dict) -> str:
    """The figures as a markdown table (docs/benchmarks.md shows the latest)."""
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
        lines.append(f"| end-to-end {e['n']:,} orders: first produce → analytics has folded all "
                     f"| {_f(e['e2e_s']['median'], 2)} s "
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
    if "clients" in r:
        lines += ["", *client_rows(r["clients"], r.get("perf"))]
    if "scale" in r:
        lines += ["", *scale_rows(r["scale"])]
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


def client_rows(c: dict, perf: dict | None = None) -> list[str]:
    """The clients section's table: confluent-kafka beside the service and raw kafka-python (information)."""
    if "skipped" in c:
        return [f"confluent-kafka rows skipped: {c['skipped']}"]
    out = [f"| clients, for information (confluent-kafka {c['confluent_kafka']}, librdkafka {c['librdkafka']}) "
           "| service | raw kafka-python | raw confluent-kafka | Java ProducerPerformance "
           "| service / confluent | kafka-python / confluent | spread (service / kafka-python / confluent) |",
           "|---|---|---|---|---|---|---|---|"]
    events = c["read_decode"]["runs"]["service"][0]["events"]
    java = _f(perf["events_per_s"]["median"]) + f" rec/s of {perf['record_size']} B" if perf else "-"
    for key, what, ceiling in (("produce", f"produce {c['n']:,} orders", java),
                               ("read_decode", f"read + JSON decode {events:,} events from offset 0", "-")):
        row = c[key]
        s, k, ck = (row[f"{who}_events_per_s"] for who in ("service", "kafka-python", "confluent-kafka"))
        out.append(f"| {what} | {_f(s['median'])} ev/s | {_f(k['median'])} ev/s | {_f(ck['median'])} ev/s "
                   f"| {ceiling} | {_f(row['service_over_confluent'], 2)} "
                   f"| {_f(row['kafka_python_over_confluent'], 2)} "
                   f"| ±{_f(s['spread_pct'])}% / ±{_f(k['spread_pct'])}% / ±{_f(ck['spread_pct'])}% |")
    return out


def scale_rows(sc: dict) -> list[str]:
    """The scale section's table: a long history's figures beside a short one's."""
    if "skipped" in sc:
        return [f"scale rows skipped: {sc['skipped']}"]
    ev = sc["events"]
    small, mid, large = (str(ev[k]) for k in ("small", "mid", "large"))
    out = ["| scale: history of ... events | at the large history | at the small one | ratio "
           "| spread (large / small) |",
           "|---|---|---|---|---|"]
    for key, label in (("analytics_restart", "analytics-consumer restart until /metrics is live"),
                       ("inventory_restart", "inventory-consumer restart until it has committed an order")):
        s = sc[f"{key}_s"]
        out.append(f"| {label}, {ev['large']:,} vs {ev['small']:,} | {_f(s[large]['median'], 2)} s "
                   f"| {_f(s[small]['median'], 2)} s | {_f(sc[f'{key}_ratio'], 2)} "
                   f"| ±{_f(s[large]['spread_pct'])}% / ±{_f(s[small]['spread_pct'])}% |")
    rp = sc["replay_events_per_s"]
    out.append(f"| replay events/s, {ev['large']:,} vs {ev['mid']:,} | {_f(rp[large]['median'])} ev/s "
               f"| {_f(rp[mid]['median'])} ev/s | {_f(sc['replay_ratio'], 2)} "
               f"| ±{_f(rp[large]['spread_pct'])}% / ±{_f(rp[mid]['spread_pct'])}% |")
    v = sc["verify"]
    out.append(f"| peak RSS at {ev['large']:,} events, MB | analytics-consumer {_f(sc['analytics_peak_rss_mb'])}, "
               f"verify {_f(v['peak_rss_mb'])} (verify took {_f(v['seconds'], 1)} s) | | | |")
    return out
