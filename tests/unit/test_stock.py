"""Stock keeping per warehouse: reserve, reject, rebuild."""
import pytest

from services.common import events
from services.inventory.stock import inventory_event, reserve, stock_from_events, stock_snapshot


@pytest.mark.parametrize("start, qty, status, left", [
    (None, 3, "reserved", 7),   # unseen item starts at the initial stock (10)
    (5, 5, "reserved", 0),
    (2, 3, "rejected", 2),
    (0, 1, "rejected", 0),
])
def test_reserve(start, qty, status, left):
    stock = {} if start is None else {"pizza": start}
    assert reserve(stock, "pizza", qty, initial=10) == (status, left)
    assert stock["pizza"] == left


def test_rebuilt_stock_continues_where_processing_left_off():
    stock: dict = {}
    produced = []
    for qty in (4, 4, 4, 1):
        o = events.new_order("pizza", qty)
        status, left = reserve(stock, "pizza", qty, initial=10)
        produced.append(inventory_event(o, 0, status, left, o["created_ms"]))
    assert [e["status"] for e in produced] == ["reserved", "reserved", "rejected", "reserved"]
    assert stock_from_events(produced) == stock == {"pizza": 1}


def test_snapshot_is_a_copy_of_the_stock_at_its_offset():
    stock = {"pizza": 4}
    snap = stock_snapshot(1, stock, orders_offset=9)
    reserve(stock, "pizza", 1, initial=10)  # later processing must not change what was written
    assert snap == {"schema": events.SCHEMA_VERSION, "warehouse": 1, "orders_offset": 9, "stock": {"pizza": 4}}
