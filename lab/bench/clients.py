"""The clients section: the service, raw kafka-python and raw confluent-kafka doing the same work, in turn."""
from __future__ import annotations

from lab.bench import confluent
from lab.bench.baselines import raw_produce, raw_read_decode
from lab.bench.harness import CLIENTS_TOPIC, Lab
from lab.bench.sections import bulk_run, seed_for_replay
from lab.bench.stats import pair_median, summary
from lab.stack import ANALYTICS, INVENTORY
from services.common.topics import INVENTORY_EVENTS, ORDER_EVENTS

WHO = ("service", "kafka-python", "confluent-kafka")


def rotation(rep: int) -> tuple[str, ...]:
    """Who runs first in repetition rep: each client first, second and third in turn."""
    return WHO[rep % 3:] + WHO[:rep % 3]


def bench_clients(lab: Lab) -> dict:
    """Read-and-decode the topics from 0, then produce n orders, three ways in rotating order; ratios per rotation.

    For information beside the targets: what the lab's choice of kafka-python costs against
    librdkafka. Every read comes first, over the same history (replay's), so no produce run
    of this section lengthens them. The produce runs follow with the consumers stopped.
    """
    reason = confluent.unavailable(lab.cfg)
    if reason:
        lab.say(f"  clients: skipped, {reason}")
        return {"skipped": reason}
    n = min(lab.plan.clients_n, lab.cfg.max_bulk_n)
    read = {who: [] for who in WHO}
    produce = {who: [] for who in WHO}
    seed_for_replay(lab)
    lab.settle()
    ends = lab.end_offsets([ORDER_EVENTS, INVENTORY_EVENTS])
    for rep in range(lab.plan.clients_reps):
        for who in rotation(rep):
            read[who].append(read_run(lab, who, ends))
        lab.say(f"  clients read rep {rep + 1}: {read['service'][-1]['events']:,} events, "
                + ", ".join(f"{who} {read[who][-1]['events_per_s']:.0f}" for who in WHO) + " ev/s")
    # The consumers stop while the clients produce: the service's orders would set them working
    # during its run (the raw clients write to a scratch topic), and on 2 cores they take the CPU.
    lab.stop_service(INVENTORY)
    lab.stop_service(ANALYTICS)
    try:
        for rep in range(lab.plan.clients_reps):
            for who in rotation(rep):
                produce[who].append(produce_run(lab, who, n))
            lab.say(f"  clients produce rep {rep + 1}: {n:,} orders, "
                    + ", ".join(f"{who} {produce[who][-1]['events_per_s']:.0f}" for who in WHO) + " ev/s")
    finally:
        lab.start_service(INVENTORY)
        lab.start_service(ANALYTICS)
        lab.stack.wait_healthy()
    lab.settle()  # they catch up with the service's orders before the next section
    return {"n": n, "confluent_kafka": confluent.confluent_kafka.version(),
            "librdkafka": confluent.confluent_kafka.libversion()[0],
            "produce": rows(produce), "read_decode": rows(read)}


def read_run(lab: Lab, who: str, ends) -> dict:
    """One read of the history up to ends: POST /replay, or a raw loop reading and decoding the same."""
    if who == "kafka-python":
        return raw_read_decode(lab.cfg, ends)
    if who == "confluent-kafka":
        return confluent.read_decode(lab.cfg, ends)
    r, seconds = lab.post(lab.stack.analytics_url + "/replay")
    if r.status_code != 200:
        raise RuntimeError(f"/replay answered {r.status_code}: {r.text[:300]}")
    events = r.json()["events_replayed"]
    return {"events": events, "seconds": seconds, "events_per_s": events / seconds}


def produce_run(lab: Lab, who: str, n: int) -> dict:
    """n mixed orders: through POST /orders/bulk, or a raw producer loop into the scratch topic."""
    if who == "kafka-python":
        return raw_produce(lab.producer, n, topic=CLIENTS_TOPIC)
    if who == "confluent-kafka":
        return confluent.produce(lab.cfg, n, topic=CLIENTS_TOPIC)
    return bulk_run(lab, "service", n, None)


def rows(runs: dict[str, list[dict]]) -> dict:
    """Each client's events/s and the paired ratios against confluent-kafka."""
    ck = runs["confluent-kafka"]
    return {**{f"{who}_events_per_s": summary(r["events_per_s"] for r in runs[who]) for who in WHO},
            "service_over_confluent": pair_median(runs["service"], ck, "events_per_s"),
            "kafka_python_over_confluent": pair_median(runs["kafka-python"], ck, "events_per_s"),
            "service_over_kafka_python": pair_median(runs["service"], runs["kafka-python"], "events_per_s"),
            "runs": runs}
