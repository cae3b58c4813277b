"""Nothing lost, nothing doubled: crashes, rebalances, a broker outage and poison records, on real processes.

Every test runs twice: on the single embedded broker, and on the 3-broker cluster (RF 3, min ISR 2).
"""
from __future__ import annotations

import threading
import time

import pytest
import requests
from kafka import KafkaAdminClient, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType

from lab.verify import reconcile
from services.common.topics import INVENTORY_EVENTS, INVENTORY_EVENTS_DLQ, ORDER_EVENTS, ORDER_EVENTS_DLQ
from tests.integration.kafka_reads import end_offsets, read_topic, values, wait_for


@pytest.fixture(scope="module", params=["one broker", "three brokers"])
def stack(request, stack):
    """The session's single-broker stack, then the 3-broker cluster: one suite, two clusters."""
    return stack if request.param == "one broker" else request.getfixturevalue("cluster_stack")


def _metrics(stack) -> dict:
    return requests.get(stack.analytics_url + "/metrics", timeout=30).json()


def _drained(stack, timeout_s: float = 120) -> dict:
    """Wait until inventory and analytics have processed every order in the topic."""
    def done():
        n = sum(end_offsets(stack.bootstrap, [ORDER_EVENTS]).values())
        m = _metrics(stack)
        return m if (m["orders_total"] + m["dead_letters"].get(ORDER_EVENTS, 0) == n
                     and m["inventory_events_total"] == m["orders_total"]
                     and all(x["lag"] == 0 for x in (m["lag"] or [{"lag": 1}]))) else None
    return wait_for(done, timeout_s, interval_s=0.5, what="the pipeline to drain")


def _assert_exactly_once(stack):
    result = reconcile(stack.service_config(), initial_stock=1_000_000)
    assert result["ok"], result
    return result


def _burst(stack, n: int, **extra) -> dict:
    r = requests.post(stack.producer_url + "/orders/bulk", json={"n": n, "item": "mixed", **extra}, timeout=120)
    assert r.status_code == 201, r.text
    return r.json()


def test_inventory_killed_mid_burst_loses_and_doubles_nothing(stack):
    # A small throttle stretches the 3000 events over several seconds, so kills land mid-stream.
    stack.restart("inventory-consumer", {"THROTTLE_MS": 3})
    try:
        _burst(stack, 3000)
        kills = 0
        for _ in range(4):
            time.sleep(1.5)
            assert stack.kill("inventory-consumer")
            kills += 1
            stack.start_instance("inventory-consumer", 0)
    finally:
        stack.restart("inventory-consumer")
    assert kills == 4
    _drained(stack)
    result = _assert_exactly_once(stack)
    assert result[INVENTORY_EVENTS]["orders"] == result[ORDER_EVENTS]["orders"]


def test_rebalance_adding_and_killing_instances_mid_burst(stack):
    stack.restart("inventory-consumer", {"THROTTLE_MS": 3})
    try:
        _burst(stack, 3000)
        time.sleep(1)
        stack.start_instance("inventory-consumer", 1)   # join: partitions move mid-burst
        stack.start_instance("inventory-consumer", 2)
        time.sleep(3)
        stack.kill("inventory-consumer", 1)              # crash: its partitions move again
        time.sleep(2)
    finally:
        stack.restart("inventory-consumer")
    _drained(stack)
    _assert_exactly_once(stack)


def test_analytics_killed_and_restarted_equals_replay(stack):
    _burst(stack, 1000)
    stack.kill("analytics-consumer")
    stack.restart("analytics-consumer")
    m = _drained(stack)
    r = requests.post(stack.analytics_url + "/replay", timeout=120)
    assert r.status_code == 200
    replay = r.json()
    assert replay["diff"] == {}
    assert replay["after"]["orders_total"] == m["orders_total"]


def test_broker_outage_gives_503_never_a_false_201_and_everything_resumes(stack):
    acked: list[str] = []
    statuses: list[int] = []
    stop = threading.Event()

    def load():
        with requests.Session() as s:
            while not stop.is_set():
                try:
                    r = s.post(stack.producer_url + "/order", json={"item": "outage", "qty": 1}, timeout=60)
                except requests.RequestException:
                    statuses.append(-1)
                    continue
                statuses.append(r.status_code)
                if r.status_code == 201:
                    acked.append(r.json()["order_id"])

    t = threading.Thread(target=load)
    t.start()
    try:
        wait_for(lambda: len(acked) > 20, 30, what="orders before the outage")
        stack.cluster.stop()   # every broker: no leader is left for any partition
        down_from = len(statuses)
        wait_for(lambda: statuses[down_from:].count(503) >= 2, 60, what="503s while the broker is down")
        before_restart = len(acked)
        stack.cluster.start()
        wait_for(lambda: len(acked) > before_restart + 20, 120, what="orders acknowledged after the restart")
    finally:
        stop.set()
        t.join(timeout=120)
    assert set(statuses) <= {201, 503}, set(statuses)
    in_topic = {e["order_id"] for e in values(read_topic(stack.bootstrap, ORDER_EVENTS))}
    assert set(acked) <= in_topic
    _drained(stack, timeout_s=180)   # both consumers resumed without a manual step
    _assert_exactly_once(stack)


def _leave_open_transaction(bootstrap: str, transactional_id: str, tp: TopicPartition) -> None:
    """Write to tp in a transaction of transactional_id that its coordinator never hears of.

    The commit then writes no marker there: the state Kafka 4.3.1 leaves when it loses a
    commit's markers (services/common/transactions.py). The record goes out without
    AddPartitionsToTxn, which the broker accepts only with partition verification off.
    """
    admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","), client_id="test-admin")
    nodes = [str(b["broker_id"]) for b in admin.describe_cluster()["brokers"]]
    verification = [[ConfigResource(ConfigResourceType.BROKER, n,
                                    configs={"transaction.partition.verification.enable": v})
                     for n in nodes] for v in ("false", "true")]
    admin.alter_configs(verification[0])
    try:
        time.sleep(1)  # the dynamic config reaches the request handlers
        p = KafkaProducer(bootstrap_servers=bootstrap.split(","), transactional_id=transactional_id)
        p.init_transactions()
        p.begin_transaction()
        p._transaction_manager._partitions_in_transaction.add(tp)  # pretend it was added
        p.send(tp.topic, key=b"lost", value=b"lost markers", partition=tp.partition)
        p.flush()
        p.commit_transaction()
        p.close()
    finally:
        admin.alter_configs(verification[1])
        admin.close()


def test_a_transaction_whose_markers_kafka_lost_is_aborted_by_the_next_incarnation(stack):
    tp = TopicPartition(INVENTORY_EVENTS, 0)
    assert stack.kill("inventory-consumer")
    try:
        _leave_open_transaction(stack.bootstrap, "inventory-consumer-0", tp)
        # Open: read_committed readers (analytics) cannot pass it.
        assert end_offsets(stack.bootstrap, [INVENTORY_EVENTS], "read_committed")[tp] < \
            end_offsets(stack.bootstrap, [INVENTORY_EVENTS])[tp]
    finally:
        stack.start_instance("inventory-consumer", 0)
    wait_for(lambda: end_offsets(stack.bootstrap, [INVENTORY_EVENTS], "read_committed")[tp]
             == end_offsets(stack.bootstrap, [INVENTORY_EVENTS])[tp], 60, what="the open transaction aborted")
    assert "aborting a transaction left open with lost markers" in \
        stack.log_file("inventory-consumer", 0).read_text()
    _burst(stack, 200)
    _drained(stack)
    _assert_exactly_once(stack)
    assert not [r for r in read_topic(stack.bootstrap, INVENTORY_EVENTS) if r.key == b"lost"]


def test_poison_records_go_to_dead_letter_topics_and_consumers_go_on(stack):
    producer = KafkaProducer(bootstrap_servers=stack.bootstrap)
    poison = [b"not json", b'{"schema": 1, "order_id": "x"}', b'{"schema": 99, "order_id": "y", "item": "a",'
              b' "qty": 1, "created_ms": 1}', b'{"schema": 1, "order_id": "z", "item": "a", "qty": "two",'
              b' "created_ms": 1}']
    before = _metrics(stack)["dead_letters"]
    for i, raw in enumerate(poison):
        producer.send(ORDER_EVENTS, key=b"poison-%d" % i, value=raw, partition=i % 3)
    producer.send(INVENTORY_EVENTS, key=b"poison-inv", value=b"\x00\x01garbage", partition=0)
    producer.flush()
    producer.close()
    _burst(stack, 50)  # the consumers must go on past the poison
    _drained(stack)
    dlq = read_topic(stack.bootstrap, ORDER_EVENTS_DLQ)
    mine = {r.key: r for r in dlq if r.key and r.key.startswith(b"poison-")}
    assert len(mine) == len(poison)
    for i, raw in enumerate(poison):
        rec = mine[b"poison-%d" % i]
        headers = {k: v.decode() for k, v in rec.headers}
        assert rec.value == raw  # the original bytes, untouched
        assert headers["dlq.source.topic"] == ORDER_EVENTS
        assert int(headers["dlq.source.partition"]) == i % 3
        assert headers["dlq.source.offset"].isdigit() and headers["dlq.error"]
    inv_dlq = [r for r in read_topic(stack.bootstrap, INVENTORY_EVENTS_DLQ) if r.key == b"poison-inv"]
    assert len(inv_dlq) == 1 and inv_dlq[0].value == b"\x00\x01garbage"
    after = wait_for(lambda: (d := _metrics(stack)["dead_letters"]).get(INVENTORY_EVENTS, 0)
                     > before.get(INVENTORY_EVENTS, 0) and d, 30, what="dead letters in /metrics")
    assert after[ORDER_EVENTS] - before.get(ORDER_EVENTS, 0) == len(poison)
    _assert_exactly_once(stack)


def test_replay_is_single_flight_and_leaves_live_offsets_alone(stack):
    _burst(stack, 5000)
    _drained(stack)
    admin = KafkaAdminClient(bootstrap_servers=stack.bootstrap)
    try:
        groups = {"inventory-grp": None, "analytics-grp": None}
        before = admin.list_group_offsets(groups)
        first: list = []
        t = threading.Thread(target=lambda: first.append(
            requests.post(stack.analytics_url + "/replay", timeout=120).status_code))
        t.start()
        conflicts = 0
        time.sleep(0.05)
        while t.is_alive():
            r = requests.post(stack.analytics_url + "/replay", timeout=120)
            assert r.status_code in (200, 409)
            if r.status_code == 409:
                conflicts += 1
                assert "already running" in r.json()["error"]
            time.sleep(0.02)
        t.join()
        assert first == [200] and conflicts >= 1
        assert admin.list_group_offsets(groups) == before
    finally:
        admin.close()
