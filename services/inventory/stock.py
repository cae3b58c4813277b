"""Stock keeping, pure: each OrderEvents partition is one warehouse with its own stock.

Orders are keyed on order_id, so one item's orders spread over every partition. Keeping
stock per partition ("warehouse") means one consumer instance owns all the state its
partitions need, which is what lets N instances share the work exactly once.
"""
from __future__ import annotations

from services.common.events import SCHEMA_VERSION


def reserve(stock: dict[str, int], item: str, qty: int, initial: int) -> tuple[str, int]:
    """Reserve qty of item from stock in place; returns (status, stock_left)."""
    left = stock.get(item, initial)
    if left >= qty:
        left -= qty
        stock[item] = left
        return "reserved", left
    stock.setdefault(item, left)
    return "rejected", left


def inventory_event(order: dict, warehouse: int, status: str, stock_left: int, processed_ms: int) -> dict:
    """The InventoryEvents record for one processed order."""
    return {
        "schema": SCHEMA_VERSION,
        "order_id": order["order_id"],
        "item": order["item"],
        "qty": order["qty"],
        "status": status,
        "stock_left": stock_left,
        "warehouse": warehouse,
        "order_created_ms": order["created_ms"],
        "processed_ms": processed_ms,
    }


def stock_from_events(events) -> dict[str, int]:
    """Rebuild one warehouse's stock from its InventoryEvents: the last stock_left per item wins."""
    stock: dict[str, int] = {}
    for ev in events:
        stock[ev["item"]] = ev["stock_left"]
    return stock


def stock_snapshot(warehouse: int, stock: dict[str, int], orders_offset: int) -> dict:
    """The InventoryState record: warehouse's whole stock once every order before orders_offset is processed."""
    return {"schema": SCHEMA_VERSION, "warehouse": warehouse, "orders_offset": orders_offset, "stock": dict(stock)}
