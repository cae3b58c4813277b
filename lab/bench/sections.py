"""The bench's sections: each measures one path of the stack beside the raw loop doing the same work."""
from __future__ import annotations

import http.client
import json
import statistics
import time
from urllib.parse import urlparse

from kafka import TopicPartition

from lab.bench.baselines import (
    producer_performance,
    raw_consume_produce,
    raw_order_client,
    raw_produce,
    raw_read_decode,
)
from lab.bench.harness import ANALYTICS_GROUP, INVENTORY_GROUP, Lab, RssSampler, closed_loop, watch_group
from lab.bench.stats import flatness, linearity, pair_median, percentile, summary, versus
from lab.stack import ANALYTICS, INVENTORY, KAFKA, PRODUCER
from services.common import events, kafka_clients
from services.common.topics import INVENTORY_EVENTS, ORDER_EVENTS
from services.producer.app import ORDER_LINGER_MS


def bench_e2e(lab: Lab) -> dict:
    """10k mixed orders: produce time, time until /metrics counts all of them, creation -> inventory latency.

    The moment analytics has folded every order and inventory event is read from its
    group's committed offsets (it commits right after folding a batch), polled every 10 ms
    from outside the services. Polling /metrics itself would measure in steps of one
    /metrics call, slow under load (it reads lag); one /metrics call afterwards confirms
    it counts them all.
    """
    n = lab.plan.e2e_n
    orders_tps, inventory_tps = lab.partitions(ORDER_EVENTS), lab.partitions(INVENTORY_EVENTS)
    # Warm-up: the first transaction after a start looks up coordinators.
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
                # and inventory-grp's offsets can show before the markers on InventoryEvents,
                # which would stop the clock early. No transaction is
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
        if m["orders_total"] < base["orders_total"] + n or \
                m["inventory_events_total"] < base["inventory_events_total"] + n:
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


def inventory_latencies(lab: Lab, start: dict[TopicPartition, int], timeout_s: float = 600) -> list[int]:
    """processed_ms - order_created_ms of the InventoryEvents written after start: what /metrics folds."""
    ends = lab.end_offsets([INVENTORY_EVENTS])
    c = kafka_clients.consumer(lab.cfg, group_id=None, client_id="bench-latency", max_poll_records=5000)
    out = []
    deadline = time.monotonic() + timeout_s
    try:
        c.assign(list(ends))
        for tp in ends:
            c.seek(tp, start[tp])
        while any(c.position(tp) < ends[tp] for tp in ends):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the latency read did not reach the end offsets in {timeout_s}s")
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
    return versus(service, raw, events=service[0]["events"])


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
    headers = {"Content-Type": "application/json", **lab.cfg.authorization()}
    body = json.dumps({"item": "pizza", "qty": 1})
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)

    def call() -> bool:
        conn.request("POST", "/order", body, headers)
        resp = conn.getresponse()
        resp.read()
        return resp.status == 201
    return call, conn.close


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
    out = versus(service, plain, n=n)
    out["raw_eos_events_per_s"] = summary(r["events_per_s"] for r in eos)
    out["ratio_vs_raw_eos"] = round(statistics.median(s["events_per_s"] / e["events_per_s"]
                                                      for s, e in zip(service, eos, strict=True)), 3)
    out["raw_eos_runs"] = eos
    return out


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
            inner = bulk_inner(n, sizes, lab.plan.bulk_inner_most)
            for i in range(inner):
                for who in (("service", "raw") if (rep + i) % 2 == 0 else ("raw", "service")):
                    # Every run starts with idle consumers. Back to back, the second run of a
                    # pair shared the CPU with the consumers working through the first one's
                    # events; alternating the order evened that out only on average.
                    lab.settle()
                    runs[n][who].append(bulk_run(lab, who, n, rss_peak if n == max(sizes) else None))
            s, w = runs[n]["service"][-1], runs[n]["raw"][-1]
            lab.say(f"  bulk rep {rep + 1} n={n}{f' (x{inner})' if inner > 1 else ''}: "
                    f"service {s['events_per_s']:.0f} ev/s ({s['seconds']:.3f}s), "
                    f"raw {w['events_per_s']:.0f} ev/s ({w['seconds']:.3f}s)")
    by_n = {str(n): versus(runs[n]["service"], runs[n]["raw"], n=n) for n in sizes}
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


def bulk_inner(n: int, sizes, most: int = 20) -> int:
    """Back-to-back runs per repetition: one for the largest n, 20 (most) at 1k, 3 at 10k.

    The smaller the bulk, the larger the scheduling noise next to it, so the more pairs
    its median needs.
    """
    return 1 if n == max(sizes) else max(1, min(most, 30_000 // n))


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
