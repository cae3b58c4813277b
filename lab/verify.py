"""./run_all.sh verify: reconcile the topics by reading them independently of the services.

Per topic: records, duplicates (an order_id seen more than once), missing (an order with no
inventory event, or the reverse); per warehouse and item: does the latest stock_left equal
the initial stock minus everything reserved? Exits 1 on any discrepancy.
"""
from __future__ import annotations

import argparse
import json
from collections import Counter, defaultdict

from kafka import TopicPartition

from services.common import kafka_clients
from services.common.events import DecodeError, decode_inventory, decode_order
from services.common.topics import DLQ_FOR, INVENTORY_EVENTS, ORDER_EVENTS


def read_all(cfg, topic: str) -> list:
    """Every committed record of topic, offset 0 to the current end, with a throwaway reader."""
    c = kafka_clients.consumer(cfg, group_id=None, client_id="lab-verify", max_poll_records=5000)
    try:
        tps = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic) or ())]
        c.assign(tps)
        c.seek_to_beginning(*tps)
        ends = kafka_clients.end_offsets(c, tps)
        out = []
        pending = {tp for tp in tps if c.position(tp) < ends[tp]}
        while pending:
            for tp, recs in c.poll(timeout_ms=500).items():
                out.extend(r for r in recs if r.offset < ends[tp])
            pending = {tp for tp in pending if c.position(tp) < ends[tp]}
        return out
    finally:
        c.close()


def reconcile(cfg, initial_stock: int) -> dict:
    """The reconciliation as a dict; "ok" is False on any duplicate, gap or stock imbalance."""
    orders, bad_orders = _decoded(read_all(cfg, ORDER_EVENTS), decode_order)
    inventory, bad_inventory = _decoded(read_all(cfg, INVENTORY_EVENTS), decode_inventory)
    order_ids = Counter(o["order_id"] for _, o in orders)
    inv_ids = Counter(e["order_id"] for _, e in inventory)
    reserved: dict = defaultdict(int)
    latest: dict = {}
    for _, e in inventory:  # records of one warehouse are in offset order within its partition
        key = (e["warehouse"], e["item"])
        if e["status"] == "reserved":
            reserved[key] += e["qty"]
        latest[key] = e["stock_left"]
    unbalanced = {f"{w}/{item}": {"stock_left": left, "expected": initial_stock - reserved[(w, item)]}
                  for (w, item), left in latest.items() if left != initial_stock - reserved[(w, item)]}
    misplaced = sum(1 for rec, e in inventory if e["warehouse"] != rec.partition)
    dlq = {t: len(read_all(cfg, DLQ_FOR[t])) for t in DLQ_FOR}
    result = {
        ORDER_EVENTS: {"records": len(orders) + bad_orders, "orders": len(order_ids),
                       "duplicates": sum(n - 1 for n in order_ids.values() if n > 1),
                       "malformed": bad_orders, "dead_lettered": dlq[ORDER_EVENTS]},
        INVENTORY_EVENTS: {"records": len(inventory) + bad_inventory, "orders": len(inv_ids),
                           "duplicates": sum(n - 1 for n in inv_ids.values() if n > 1),
                           "missing": len(set(order_ids) - set(inv_ids)),
                           "unknown_orders": len(set(inv_ids) - set(order_ids)),
                           "wrong_warehouse": misplaced,
                           "malformed": bad_inventory, "dead_lettered": dlq[INVENTORY_EVENTS]},
        "stock": {"warehouse_items": len(latest), "unbalanced": unbalanced, "initial_stock": initial_stock},
    }
    inv = result[INVENTORY_EVENTS]
    result["ok"] = (result[ORDER_EVENTS]["duplicates"] == 0 and inv["duplicates"] == 0 and inv["missing"] == 0
                    and inv["unknown_orders"] == 0 and misplaced == 0 and not unbalanced
                    and bad_orders <= dlq[ORDER_EVENTS])
    return result


def _decoded(records, decode):
    good, bad = [], 0
    for rec in records:
        try:
            good.append((rec, decode(rec.value)))
        except DecodeError:
            bad += 1
    return good, bad


def main(argv: list[str], stack) -> int:
    p = argparse.ArgumentParser(prog="run_all.sh verify", description=__doc__.splitlines()[0])
    p.add_argument("--json", action="store_true", help="print the reconciliation as JSON")
    args = p.parse_args(argv)
    cfg = stack.service_config()
    result = reconcile(cfg, cfg.initial_stock)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for topic in (ORDER_EVENTS, INVENTORY_EVENTS):
            print(f"{topic:16} " + "  ".join(f"{k}={v}" for k, v in result[topic].items()))
        st = result["stock"]
        print(f"{'stock':16} warehouse_items={st['warehouse_items']}  unbalanced={len(st['unbalanced'])}"
              f"  (initial {st['initial_stock']} per item per warehouse)")
        for key, v in list(st["unbalanced"].items())[:20]:
            print(f"  {key}: stock_left={v['stock_left']} expected={v['expected']}")
        print("OK: nothing lost, nothing doubled, stock balances" if result["ok"] else "MISMATCH: see above")
    return 0 if result["ok"] else 1
