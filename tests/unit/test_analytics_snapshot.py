"""AnalyticsState snapshots, without a broker: encoding, decoding, what is refused and why, the size cap."""
from __future__ import annotations

import dataclasses
import json
import random

import pytest
from kafka import TopicPartition

from services.analytics.metrics import MetricsState, fold_record, snapshot
from services.analytics.snapshot import (
    INPUTS,
    MAX_SNAPSHOT_BYTES,
    SCHEMA_VERSION,
    Snapshot,
    SnapshotRejected,
    SnapshotStore,
    check_trusted,
    decode_snapshot,
    encode_snapshot,
)
from services.common import events
from services.common.config import Config
from services.common.topics import INVENTORY_EVENTS, ORDER_EVENTS

IDS = {ORDER_EVENTS: "id-orders", INVENTORY_EVENTS: "id-inventory"}


def stream(n: int, seed: int = 7, items=("pizza", "Crème brûlée", "x" * 64)) -> list[tuple[str, int, bytes]]:
    """(topic, partition, value) records as the topics hold them: orders, their inventory events, some poison."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        order = events.new_order(rng.choice(items), rng.randint(1, 5), created_ms=1_000 + i)
        p = rng.randrange(3)
        out.append((ORDER_EVENTS, p, events.encode(order)))
        status = rng.choice(["reserved", "rejected"])
        out.append((INVENTORY_EVENTS, p, events.encode(
            {"schema": 1, "order_id": order["order_id"], "item": order["item"], "qty": order["qty"],
             "status": status, "stock_left": rng.randint(-3, 100), "warehouse": p,
             "order_created_ms": order["created_ms"], "processed_ms": order["created_ms"] + rng.randint(0, 900)})))
        if i % 17 == 0:
            out.append((rng.choice(INPUTS), p, b"not json"))
    return out


def fold(records, state: MetricsState | None = None) -> MetricsState:
    state = state or MetricsState()
    for topic, partition, value in records:
        fold_record(state, topic, partition, value)
    return state


def offsets(base: int = 10) -> dict[TopicPartition, int]:
    return {TopicPartition(t, p): base + p for t in INPUTS for p in range(3)}


def encoded(state=None, offs=None, ids=IDS, written_ms=1234) -> bytes:
    return encode_snapshot(state if state is not None else fold(stream(40)), offs or offsets(), ids, written_ms)


def test_a_snapshot_decodes_to_the_same_state_and_offsets():
    state = fold(stream(300))
    snap = decode_snapshot(encoded(state))
    assert snap.state == state and snapshot(snap.state) == snapshot(state)
    assert snap.offsets == offsets() and snap.topic_ids == IDS and snap.written_ms == 1234


def test_every_field_of_the_metrics_state_is_in_the_snapshot():
    # A new MetricsState field that the snapshot left out would be lost at every restart.
    doc = json.loads(encoded())
    assert set(doc["state"]) == {f.name for f in dataclasses.fields(MetricsState)}
    assert doc["schema"] == SCHEMA_VERSION


@pytest.mark.parametrize("cut", [0, 1, 57, 150, 239])
def test_restoring_a_snapshot_then_folding_the_rest_equals_folding_everything(cut):
    records = stream(80)
    restored = decode_snapshot(encoded(fold(records[:cut]))).state
    assert snapshot(fold(records[cut:], restored)) == snapshot(fold(records))


def _doc(**changes) -> bytes:
    doc = json.loads(encoded())
    for path, value in changes.items():
        target = doc
        *parents, last = path.split("__")
        for key in parents:
            target = target[key]
        if value is KeyError:
            del target[last]
        else:
            target[last] = value
    return json.dumps(doc).encode()


@pytest.mark.parametrize("raw, reason", [
    (None, "empty record"),
    (b"\x00\x01garbage", "not JSON"),
    (b"[1, 2]", "not an analytics snapshot"),
    # Someone else's record, e.g. an InventoryState snapshot written to the wrong topic.
    (events.encode({"schema": 1, "warehouse": 0, "orders_offset": 5, "stock": {"pizza": 3}}),
     "not an analytics snapshot"),
    (_doc(schema=SCHEMA_VERSION + 1), f"schema {SCHEMA_VERSION + 1}, this version reads {SCHEMA_VERSION}"),
    (_doc(schema=KeyError), "schema None"),
    (_doc(offsets__OrderEvents=KeyError), "offsets: not one object per topic"),
    (_doc(offsets__OrderEvents__0=-1), "offsets.OrderEvents.0"),
    (_doc(offsets__OrderEvents__0=True), "offsets.OrderEvents.0"),
    (_doc(state__orders_total="12"), "state.orders_total"),
    (_doc(state__orders_by_item={"pizza": 0}), "state.orders_by_item.pizza"),
    (_doc(state__latency_ms=[[1, 2, 3]]), "state.latency_ms: not a list of 2-element rows"),
    (_doc(state__stock=[[0, 7, 3]]), "state.stock: item 7"),
    (_doc(state__kind_of_new_metric=1), "state: fields ['kind_of_new_metric'] differ"),
    (_doc(state__dead_letters=KeyError), "state: fields ['dead_letters'] differ"),
    (_doc(written_ms=KeyError), "written_ms"),
])
def test_corrupt_foreign_and_other_schema_records_are_refused_with_the_reason(raw, reason):
    with pytest.raises(SnapshotRejected, match=reason.replace("[", r"\[").replace("(", r"\(")):
        decode_snapshot(raw)


def _logs(begin: int = 0, end: int = 100):
    tps = list(offsets())
    return {tp: begin for tp in tps}, {tp: end for tp in tps}


def test_a_snapshot_within_the_logs_is_trusted():
    snap = decode_snapshot(encoded())
    starts, ends = _logs()
    check_trusted(snap, IDS, starts, ends)
    # A client that does not know a topic's id checks the rest.
    check_trusted(snap, {ORDER_EVENTS: None, INVENTORY_EVENTS: None}, starts, ends)
    check_trusted(decode_snapshot(encoded(ids={})), IDS, starts, ends)
    # An offset at the log's very end (nothing after it) or start is still inside.
    check_trusted(snap, IDS, {tp: o for tp, o in snap.offsets.items()}, {tp: o for tp, o in snap.offsets.items()})


@pytest.mark.parametrize("case, reason", [
    ("retention deleted records it had not folded", "outside the log's 11..100"),
    ("the log is shorter than the snapshot (recreated, truncated)", "outside the log's 0..5"),
    ("the topic was recreated", "OrderEvents was recreated"),
    ("a partition was added", "OrderEvents had partitions [0, 1, 2], has [0, 1, 2, 3]"),
])
def test_a_snapshot_whose_offsets_no_longer_describe_the_logs_is_refused(case, reason):
    snap = decode_snapshot(encoded())
    starts, ends = _logs()
    ids = dict(IDS)
    if case.startswith("retention"):
        starts = {tp: 11 for tp in starts}
    elif case.startswith("the log is shorter"):
        ends = {tp: 5 for tp in ends}
    elif case.startswith("the topic"):
        ids[ORDER_EVENTS] = "another-id"
    else:
        starts[TopicPartition(ORDER_EVENTS, 3)] = 0
        ends[TopicPartition(ORDER_EVENTS, 3)] = 0
    with pytest.raises(SnapshotRejected, match=reason.replace("[", r"\[")):
        check_trusted(snap, ids, starts, ends)


def test_a_state_over_the_size_cap_is_not_written_and_the_fold_keeps_every_item():
    # Free-form items: every one makes rows in five maps. Past the cap the snapshot is skipped
    # (before any Kafka client exists); the state itself, and so /metrics, keeps them all.
    items = [f"item-{i:05d}-" + "x" * 52 for i in range(8000)]
    state = fold(stream(8000, items=items))
    assert len(encode_snapshot(state, offsets(), IDS, 0)) > MAX_SNAPSHOT_BYTES
    store = SnapshotStore(Config.from_env({}))
    assert store.write(state, offsets(), IDS) is False
    assert store.describe()["skipped_too_large"] == 1 and store.describe()["written"] == 0
    assert len(snapshot(state)["orders_by_item"]) == len(set(items) & set(state.orders_by_item)) > 4096


def test_the_lab_catalog_and_a_thousand_long_item_names_fit_under_the_cap():
    assert len(encoded(fold(stream(2000, items=events.CATALOG)))) < 10_000
    items = [f"{i:04d}" + "y" * 60 for i in range(1000)]
    assert len(encode_snapshot(fold(stream(3000, items=items)), offsets(), IDS, 0)) < MAX_SNAPSHOT_BYTES


def test_snapshot_describe_names_each_partition():
    snap = Snapshot(state=MetricsState(), offsets={TopicPartition(ORDER_EVENTS, 1): 4}, topic_ids={}, written_ms=9)
    assert snap.describe() == {"written_ms": 9, "offsets": {"OrderEvents-1": 4}}
