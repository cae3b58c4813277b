"""analytics-consumer's AnalyticsState snapshots on a real stack.

Kills under load, refused records, a restart that skips history.

The stack starts with snapshots off (ANALYTICS_SNAPSHOT_EVERY_S=0), so the first test finds no
snapshot of analytics' own in AnalyticsState, only the records it writes there itself.
"""
from __future__ import annotations

import json
import random
import threading
import time

import pytest
import requests
from kafka import KafkaProducer

from lab.stack import ANALYTICS
from services.analytics.snapshot import KEY, SCHEMA_VERSION
from services.common.topics import ANALYTICS_STATE, INVENTORY_EVENTS, ORDER_EVENTS
from tests.conftest import make_stack, running
from tests.integration.kafka_reads import end_offsets, wait_for

SNAPSHOTS_ON = {"ANALYTICS_SNAPSHOT_EVERY_S": 1}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with running(make_stack(tmp_path_factory.mktemp("lab-analytics-snapshot"), INITIAL_STOCK=1_000_000,
                            ANALYTICS_SNAPSHOT_EVERY_S=0)) as s:
        yield s


def metrics(stack) -> dict:
    r = requests.get(stack.analytics_url + "/metrics", timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def drained(stack, timeout_s: float = 180) -> dict:
    """/metrics once analytics is live and has folded every order and inventory event in the topics."""
    def done():
        try:
            m = metrics(stack)
        except requests.RequestException:
            return None
        ends = end_offsets(stack.bootstrap, [ORDER_EVENTS, INVENTORY_EVENTS], "read_committed")
        orders = sum(o for tp, o in ends.items() if tp.topic == ORDER_EVENTS)
        return m if (m["consumer"]["phase"] == "live"
                     and m["orders_total"] + m["dead_letters"].get(ORDER_EVENTS, 0) == orders
                     and m["inventory_events_total"] == m["orders_total"]
                     and all(x["lag"] == 0 for x in (m["lag"] or [{"lag": 1}]))) else None
    return wait_for(done, timeout_s, interval_s=0.5, what="analytics to fold everything")


def assert_equals_replay(stack) -> dict:
    m = drained(stack)
    r = requests.post(stack.analytics_url + "/replay", timeout=300)
    assert r.status_code == 200, r.text
    replay = r.json()
    assert replay["diff"] == {}, replay["diff"]
    assert replay["after"]["orders_total"] == m["orders_total"]
    return m


def burst(stack, n: int, item: str = "mixed") -> None:
    r = requests.post(stack.producer_url + "/orders/bulk", json={"n": n, "item": item}, timeout=120)
    assert r.status_code == 201, r.text


def wait_started(stack) -> dict:
    """/metrics once the new analytics process has restored and gone live."""
    return wait_for(lambda: _live(stack), 120, interval_s=0.5, what="analytics to go live")


def _live(stack):
    try:
        m = metrics(stack)
    except requests.RequestException:
        return None
    return m if m["consumer"]["phase"] == "live" else None


def test_corrupt_foreign_and_other_schema_records_are_ignored_and_the_start_folds_the_history(stack):
    burst(stack, 2000)
    before = drained(stack)
    log = stack.log_file(ANALYTICS)
    seen = len(log.read_text().splitlines())
    other_schema = {"schema": SCHEMA_VERSION + 1, "kind": "analytics-state", "written_ms": 1,
                    "topic_ids": {}, "offsets": {}, "state": {}}
    foreign = {"schema": 1, "warehouse": 0, "orders_offset": 5, "stock": {"pizza": 3}}
    p = KafkaProducer(bootstrap_servers=stack.bootstrap)
    try:
        for value in (b"\x00\x01garbage", json.dumps(foreign).encode(), json.dumps(other_schema).encode()):
            p.send(ANALYTICS_STATE, key=KEY, value=value, partition=0)
        p.flush()
    finally:
        p.close()
    stack.restart(ANALYTICS, SNAPSHOTS_ON)
    m = wait_started(stack)
    start = m["consumer"]["start"]
    assert start["restored_from"] == "history"
    assert len(start["ignored"]) == 3
    # The whole history was folded: every order and inventory event, and the poison among them.
    assert start["events_folded"] == before["orders_total"] + before["inventory_events_total"] \
        + before["dead_letters_total"]
    new_lines = "\n".join(log.read_text().splitlines()[seen:])
    for reason in ("not JSON", "not an analytics snapshot", f"schema {SCHEMA_VERSION + 1}, this version reads"):
        assert "AnalyticsState record ignored" in new_lines and reason in new_lines, reason
    after = assert_equals_replay(stack)
    assert after["orders_total"] == before["orders_total"]


def test_a_restart_from_a_snapshot_folds_only_what_came_after(stack):
    burst(stack, 3000)
    before = drained(stack)
    stack.restart(ANALYTICS, SNAPSHOTS_ON)   # a clean stop writes a last snapshot
    m = wait_started(stack)
    start = m["consumer"]["start"]
    assert start["restored_from"] == "snapshot" and start["ignored"] == []
    assert start["events_folded"] == 0
    assert m["throughput"]["events_rebuilt_at_start"] == 0
    assert {k: m[k] for k in ("orders_total", "qty_total", "orders_by_item", "stock_by_item", "latency_ms")} == \
        {k: before[k] for k in ("orders_total", "qty_total", "orders_by_item", "stock_by_item", "latency_ms")}
    # Orders while it is down: the next start folds those and nothing before them.
    offsets = start["snapshot"]["offsets"]
    assert sum(offsets.values()) >= before["orders_total"] + before["inventory_events_total"]
    assert stack.kill(ANALYTICS)
    burst(stack, 500)
    stack.start_instance(ANALYTICS, 0)
    m = wait_started(stack)
    start = m["consumer"]["start"]
    assert start["restored_from"] == "snapshot"
    # Dead, it committed nothing past its last snapshot: the restore folds nothing, and the 500
    # orders come to the live loop from the committed offsets, on top of the snapshot's state.
    assert start["events_folded"] == 0
    after = assert_equals_replay(stack)
    assert after["orders_total"] == before["orders_total"] + 500


def test_kill_9_at_random_moments_under_load_loses_and_doubles_nothing(stack):
    stop = threading.Event()
    errors: list[str] = []

    def load():
        with requests.Session() as s:
            while not stop.is_set():
                try:
                    r = s.post(stack.producer_url + "/orders/bulk", json={"n": 150, "item": "mixed"}, timeout=60)
                    if r.status_code != 201:
                        errors.append(r.text)
                except requests.RequestException as exc:
                    errors.append(repr(exc))
                time.sleep(0.05)

    rng = random.Random()
    t = threading.Thread(target=load, daemon=True)
    t.start()
    rounds = []
    try:
        for _ in range(4):
            # Some rounds before the first snapshot of the new process, some well after.
            time.sleep(rng.uniform(0.3, 4.0))
            assert stack.kill(ANALYTICS)
            stack.start_instance(ANALYTICS, 0)
            rounds.append(wait_started(stack)["consumer"]["start"])
    finally:
        stop.set()
        t.join(timeout=120)
    assert not errors, errors[:3]
    assert all(r["restored_from"] in ("snapshot", "history") for r in rounds)
    assert any(r["restored_from"] == "snapshot" for r in rounds), rounds
    assert_equals_replay(stack)
