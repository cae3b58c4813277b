"""The metrics fold, pure: live processing, a restart's rebuild and a replay all call fold_record."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from services.common.events import DecodeError, decode_inventory, decode_order
from services.common.percentiles import histogram_percentile
from services.common.topics import INVENTORY_EVENTS, ORDER_EVENTS


@dataclass
class MetricsState:
    orders_total: int = 0
    inventory_events_total: int = 0
    qty_total: int = 0
    orders_by_item: Counter = field(default_factory=Counter)
    qty_by_item: Counter = field(default_factory=Counter)
    reserved: int = 0
    rejected: int = 0
    reserved_qty_by_item: Counter = field(default_factory=Counter)
    # (warehouse, item) -> the stock_left of the latest inventory event
    stock: dict = field(default_factory=dict)
    events_by_partition: dict = field(default_factory=lambda: {ORDER_EVENTS: Counter(), INVENTORY_EVENTS: Counter()})
    # end-to-end latency, order creation -> inventory processing, as a histogram of whole ms
    latency_ms: Counter = field(default_factory=Counter)
    dead_letters: Counter = field(default_factory=Counter)
    first_created_ms: int | None = None
    last_created_ms: int | None = None


def fold_record(state: MetricsState, topic: str, partition: int, value: bytes | None) -> str | None:
    """Fold one record into state (in place). Returns the reason if it is a dead letter, else None."""
    try:
        if topic == ORDER_EVENTS:
            ev = decode_order(value)
        elif topic == INVENTORY_EVENTS:
            ev = decode_inventory(value)
        else:
            raise DecodeError(f"unexpected topic {topic}")
    except DecodeError as exc:
        state.dead_letters[topic] += 1
        return str(exc)
    state.events_by_partition[topic][partition] += 1
    if topic == ORDER_EVENTS:
        state.orders_total += 1
        state.qty_total += ev["qty"]
        state.orders_by_item[ev["item"]] += 1
        state.qty_by_item[ev["item"]] += ev["qty"]
        created = ev["created_ms"]
        if state.first_created_ms is None or created < state.first_created_ms:
            state.first_created_ms = created
        if state.last_created_ms is None or created > state.last_created_ms:
            state.last_created_ms = created
    else:
        state.inventory_events_total += 1
        if ev["status"] == "reserved":
            state.reserved += 1
            state.reserved_qty_by_item[ev["item"]] += ev["qty"]
        else:
            state.rejected += 1
        state.stock[(ev["warehouse"], ev["item"])] = ev["stock_left"]
        state.latency_ms[max(0, ev["processed_ms"] - ev["order_created_ms"])] += 1
    return None


def latency_percentiles(hist: Counter, qs=(50, 95, 99)) -> dict:
    """Nearest-rank percentiles from a histogram of whole milliseconds."""
    total = sum(hist.values())
    out: dict = {"samples": total}
    if not total:
        return {**out, **{f"p{q}": None for q in qs}, "max": None}
    for q in qs:
        out[f"p{q}"] = histogram_percentile(hist, q)
    out["max"] = max(hist)
    return out


def snapshot(state: MetricsState) -> dict:
    """The JSON view of state: everything that a replay must reproduce exactly."""
    stock_by_item: Counter = Counter()
    for (_, item), left in state.stock.items():
        stock_by_item[item] += left
    return {
        "orders_total": state.orders_total,
        "inventory_events_total": state.inventory_events_total,
        "qty_total": state.qty_total,
        "orders_by_item": dict(sorted(state.orders_by_item.items())),
        "qty_by_item": dict(sorted(state.qty_by_item.items())),
        "reserved": state.reserved,
        "rejected": state.rejected,
        "reserved_qty_by_item": dict(sorted(state.reserved_qty_by_item.items())),
        "stock_by_item": dict(sorted(stock_by_item.items())),
        "events_by_partition": {t: {str(p): c for p, c in sorted(cs.items())}
                                for t, cs in state.events_by_partition.items()},
        "latency_ms": latency_percentiles(state.latency_ms),
        "dead_letters": dict(sorted(state.dead_letters.items())),
        "dead_letters_total": sum(state.dead_letters.values()),
    }


def flatten(doc: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} -> {"a.b": 1}: the shape of the before/after table."""
    out: dict = {}
    for k, v in doc.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def diff(before: dict, after: dict) -> dict:
    """Every flattened metric whose value differs: {key: {"before", "after", "delta"}}."""
    fb, fa = flatten(before), flatten(after)
    out = {}
    for key in sorted(set(fb) | set(fa)):
        b, a = fb.get(key), fa.get(key)
        if b != a:
            delta = a - b if isinstance(a, (int, float)) and isinstance(b, (int, float)) else None
            out[key] = {"before": b, "after": a, "delta": delta}
    return out
