"""The stack against a real broker: HTTP answers, what lands in the topics, metrics, replay, restarts."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType

from lab import paths
from lab.verify import reconcile
from services.common.events import DecodeError, decode_inventory, decode_order, decode_stock_snapshot
from services.common.topics import (
    INVENTORY_EVENTS,
    INVENTORY_STATE,
    ORDER_EVENTS,
    TOPICS,
    TopicMismatchError,
    TopicSpec,
    check_topics,
)
from tests.integration.kafka_reads import end_offsets, group_ids, read_topic, wait_for


def valid(records, decode) -> list[dict]:
    """The decodable events among records (other tests leave poison records in the topics)."""
    out = []
    for rec in records:
        try:
            out.append(decode(rec.value))
        except DecodeError:
            pass
    return out


def metrics(http, stack) -> dict:
    r = http.get(stack.analytics_url + "/metrics", timeout=30)
    assert r.status_code == 200
    return r.json()


def settled_metrics(http, stack) -> dict:
    """/metrics once analytics has caught up with every order and inventory event in the topics."""
    def caught_up():
        ends = end_offsets(stack.bootstrap, [ORDER_EVENTS])
        m = metrics(http, stack)
        # Poison records (the reliability tests write some) are counted as dead letters, not orders.
        seen = m["orders_total"] + m["dead_letters"].get(ORDER_EVENTS, 0)
        return m if seen == sum(ends.values()) and m["orders_total"] == m["inventory_events_total"] else None
    return wait_for(caught_up, 60, what="analytics to count every order")


def test_topics_match_the_definition(stack):
    admin = KafkaAdminClient(bootstrap_servers=stack.bootstrap)
    try:
        check_topics(admin, TOPICS)
        described = {d["name"]: d for d in admin.describe_topics([ORDER_EVENTS, INVENTORY_EVENTS])}
        assert all(len(d["partitions"]) == 3 for d in described.values())
        # The spec's 7 days, as the broker holds it (not the constant compared with itself).
        res = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, t)
                                      for t in (ORDER_EVENTS, INVENTORY_EVENTS)])["topic"]
        retention = {t: c["retention.ms"] for t, c in res.items()}
        retention = {t: v.get("value") if isinstance(v, dict) else v for t, v in retention.items()}
        assert retention == {ORDER_EVENTS: "604800000", INVENTORY_EVENTS: "604800000"}
        admin.create_topics({"Mismatched": {"num_partitions": 2, "replication_factor": 1,
                                            "configs": {"retention.ms": "1000"}}},
                            # Without it, the check can run before the new topic's metadata has
                            # reached the broker it asks, and see it "missing" (seen in CI).
                            wait_for_metadata=True)
        with pytest.raises(TopicMismatchError, match="2 partitions, expected 3.*retention.ms=1000"):
            check_topics(admin, (TopicSpec("Mismatched"),))
    finally:
        admin.close()


def test_post_order_is_acknowledged_and_in_the_topic(stack, http):
    r = http.post(stack.producer_url + "/order", json={"item": "pizza", "qty": 2}, timeout=30)
    assert r.status_code == 201
    body = r.json()
    assert set(body) == {"order_id", "partition", "offset"}
    c = KafkaConsumer(bootstrap_servers=stack.bootstrap, enable_auto_commit=False)
    try:
        tp = TopicPartition(ORDER_EVENTS, body["partition"])
        c.assign([tp])
        c.seek(tp, body["offset"])
        rec = next(r for recs in iter(lambda: c.poll(timeout_ms=1000), None) for r in recs.get(tp, []))
    finally:
        c.close()
    ev = json.loads(rec.value)
    assert rec.key == body["order_id"].encode()
    assert (ev["order_id"], ev["item"], ev["qty"], ev["schema"]) == (body["order_id"], "pizza", 2, 1)
    assert isinstance(ev["created_ms"], int)


BAD_REQUESTS = [
    ("/order", "not json", "application/json", 400, "not valid JSON"),
    ("/order", '{"item":"pizza","qty":1}', "text/plain", 415, "Content-Type"),
    ("/order", '{"qty":1}', "application/json", 400, "'item' is a required property"),
    ("/order", '{"item":"pizza","qty":1,"x":1}', "application/json", 400, "unknown field"),
    ("/order", '{"item":"pizza","qty":0}', "application/json", 400, "qty"),
    ("/order", '{"item":"pizza","qty":"1"}', "application/json", 400, "qty"),
    ("/order", '{"item":"","qty":1}', "application/json", 400, "item"),
    ("/order", '[]', "application/json", 400, "JSON object"),
    ("/order", '{"item":"' + "x" * 10_000 + '","qty":1}', "application/json", 413, ""),
    ("/orders/bulk", '{"n":0,"item":"mixed"}', "application/json", 400, "n"),
    ("/orders/bulk", '{"n":100000000,"item":"mixed"}', "application/json", 400, "maximum"),
    ("/orders/bulk", '{"n":2.5,"item":"mixed"}', "application/json", 400, "n"),
    ("/orders/bulk", '{"item":"mixed"}', "application/json", 400, "'n' is a required property"),
    ("/orders/bulk", '{"n":5,"item":"mixed","qty":2}', "application/json", 400, "qty"),
]


@pytest.mark.parametrize("path, body, ctype, status, fragment", BAD_REQUESTS)
def test_bad_input_gets_a_4xx_json_error_and_writes_nothing(stack, http, path, body, ctype, status, fragment):
    before = end_offsets(stack.bootstrap, [ORDER_EVENTS])
    r = http.post(stack.producer_url + path, data=body, headers={"Content-Type": ctype}, timeout=30)
    assert r.status_code == status
    assert fragment in r.json()["error"]
    assert end_offsets(stack.bootstrap, [ORDER_EVENTS]) == before


def test_bulk_is_counted_by_metrics_and_by_an_independent_read(stack, http):
    start = settled_metrics(http, stack)
    r = http.post(stack.producer_url + "/orders/bulk", json={"n": 3000, "item": "mixed", "seed": 1}, timeout=120)
    assert r.status_code == 201
    bulk = r.json()
    assert bulk["produced"] == 3000 and bulk["failed"] == 0
    assert sum(bulk["by_partition"].values()) == 3000 and set(bulk["by_partition"]) == {"0", "1", "2"}
    assert bulk["events_per_s"] > 0 and bulk["duration_s"] > 0
    m = settled_metrics(http, stack)
    assert m["orders_total"] - start["orders_total"] == 3000
    assert m["inventory_events_total"] - start["inventory_events_total"] == 3000
    inv = valid(read_topic(stack.bootstrap, INVENTORY_EVENTS), decode_inventory)
    orders = valid(read_topic(stack.bootstrap, ORDER_EVENTS), decode_order)
    assert len(inv) == len(orders) == m["orders_total"]
    assert sorted(e["order_id"] for e in inv) == sorted(e["order_id"] for e in orders)
    assert m["reserved"] + m["rejected"] == m["inventory_events_total"]
    assert m["latency_ms"]["samples"] == m["inventory_events_total"]
    lags = {(x["group"], x["topic"], x["partition"]): x for x in m["lag"]}
    assert len(lags) == 9  # inventory-grp on 3 partitions, analytics-grp on 6
    stats = http.get(stack.producer_url + "/stats", timeout=10).json()
    assert stats["last_bulk"]["produced"] == 3000 and stats["send_latency_ms"]["p99"] is not None


def test_replay_reproduces_live_metrics_and_deletes_its_group(stack, http):
    http.post(stack.producer_url + "/orders/bulk", json={"n": 500, "item": "mixed"}, timeout=60)
    live = settled_metrics(http, stack)
    r = http.post(stack.analytics_url + "/replay", timeout=120)
    assert r.status_code == 200
    body = r.json()
    assert set(body) >= {"before", "after", "diff", "events_replayed", "duration_s", "events_per_s", "group_id"}
    assert body["diff"] == {} and body["after"] == body["before"]
    assert body["after"]["orders_total"] == live["orders_total"]
    assert body["events_replayed"] == live["orders_total"] + live["inventory_events_total"] + live["dead_letters_total"]
    assert body["group_id"].startswith("analytics-replay-")
    assert body["group_id"] not in group_ids(stack.bootstrap)
    assert {"inventory-grp", "analytics-grp"} <= group_ids(stack.bootstrap)


def test_restarts_keep_stock_and_metrics(stack, http):
    probe = {"n": 60, "item": "restart-probe", "qty": 1}
    assert http.post(stack.producer_url + "/orders/bulk", json=probe, timeout=60).status_code == 201
    before = settled_metrics(http, stack)
    log = stack.log_file("inventory-consumer", 0)
    seen = len(log.read_text().splitlines())
    stack.restart("inventory-consumer")
    stack.restart("analytics-consumer")
    # Each warehouse's stock came from its InventoryState snapshot, not from its history; the
    # orders below show that stock is right.
    loaded = wait_for(lambda: [ln for ln in log.read_text().splitlines()[seen:] if "stock loaded" in ln]
                      if sum("stock loaded" in ln for ln in log.read_text().splitlines()[seen:]) >= 3 else None,
                      30, what="inventory to load its stock")
    assert all("from=snapshot" in ln for ln in loaded), loaded
    # Analytics rebuilds from the topics: the same figures right after a restart.
    again = wait_for(lambda: (m := metrics(http, stack))["consumer"]["phase"] == "live" and m, 60,
                     what="analytics to rebuild")
    assert again["orders_total"] == before["orders_total"]
    assert again["stock_by_item"] == before["stock_by_item"]
    # Inventory rebuilt its stock: the next 60 units come off what was left, not off a fresh stock.
    assert http.post(stack.producer_url + "/orders/bulk", json=probe, timeout=60).status_code == 201
    after = settled_metrics(http, stack)
    initial = 1_000_000  # INITIAL_STOCK of the session stack
    assert after["reserved_qty_by_item"]["restart-probe"] == 120
    assert after["stock_by_item"]["restart-probe"] == 3 * initial - 120


def _snapshots(stack) -> dict[int, dict]:
    """The latest InventoryState record per warehouse."""
    return {s["warehouse"]: s for s in valid(read_topic(stack.bootstrap, INVENTORY_STATE), decode_stock_snapshot)}


def _committed(stack, group: str, topic: str) -> dict[int, int]:
    admin = KafkaAdminClient(bootstrap_servers=stack.bootstrap)
    try:
        got = admin.list_group_offsets({group: [TopicPartition(topic, p) for p in range(3)]})[group]
    finally:
        admin.close()
    return {tp.partition: o.offset for tp, o in got.items()}


def test_inventory_state_snapshots_match_history_and_offsets(stack, http):
    r = http.post(stack.producer_url + "/orders/bulk", json={"n": 300, "item": "mixed"}, timeout=60)
    assert r.status_code == 201, r.text
    settled_metrics(http, stack)
    snaps = _snapshots(stack)
    assert sorted(snaps) == [0, 1, 2]
    # Written in the same transaction as the offsets: each snapshot sums up exactly the orders
    # inventory-grp has committed, and holds the latest stock_left of every item of its warehouse.
    assert {w: s["orders_offset"] for w, s in snaps.items()} == _committed(stack, "inventory-grp", ORDER_EVENTS)
    latest: dict = {}
    for ev in valid(read_topic(stack.bootstrap, INVENTORY_EVENTS), decode_inventory):
        latest.setdefault(ev["warehouse"], {})[ev["item"]] = ev["stock_left"]
    assert {w: s["stock"] for w, s in snaps.items()} == latest


def test_a_snapshot_that_does_not_match_the_offsets_is_not_trusted(stack, http):
    probe = {"n": 30, "item": "snapshot-probe", "qty": 2}
    assert http.post(stack.producer_url + "/orders/bulk", json=probe, timeout=60).status_code == 201
    settled_metrics(http, stack)
    # A snapshot from elsewhere (an older offset, a wrong stock) lands last in every warehouse.
    p = KafkaProducer(bootstrap_servers=stack.bootstrap)
    try:
        for w in range(3):
            bogus = {"schema": 1, "warehouse": w, "orders_offset": 0, "stock": {"snapshot-probe": 7}}
            p.send(INVENTORY_STATE, key=str(w).encode(), value=json.dumps(bogus).encode(), partition=w)
        p.flush()
    finally:
        p.close()
    stack.restart("inventory-consumer")
    # Its offset does not match inventory-grp's: the stock comes from InventoryEvents instead,
    # so the next orders come off the real remainder (60 units reserved so far), not off 7.
    assert http.post(stack.producer_url + "/orders/bulk", json=probe, timeout=60).status_code == 201
    after = settled_metrics(http, stack)
    assert after["reserved_qty_by_item"]["snapshot-probe"] == 120
    assert after["stock_by_item"]["snapshot-probe"] == 3 * 1_000_000 - 120
    # The restart's own transactions wrote correct snapshots over the bogus ones.
    assert all(s["orders_offset"] > 0 for s in _snapshots(stack).values())
    assert reconcile(stack.service_config(), initial_stock=1_000_000)["stock"]["snapshot_mismatch"] == {}


def test_status_json_from_the_command_line(stack):
    env = {**os.environ, "LAB_HOME": str(stack.home), "KAFKA_PORT": str(stack.kafka_port),
           "PRODUCER_PORT": str(stack.producer_port), "ANALYTICS_PORT": str(stack.analytics_port)}
    out = subprocess.run([sys.executable, "-m", "lab.cli", "status", "--json"], env=env, cwd=paths.ROOT,
                         capture_output=True, text=True, check=True).stdout
    st = json.loads(out)
    assert set(st) == {"kafka", "producer-order", "inventory-consumer", "analytics-consumer"}
    assert all(row["running"] and row["pids"] for row in st.values())
    assert st["producer-order"]["address"] == stack.producer_url
    assert st["kafka"]["address"] == stack.bootstrap
