"""Stock keeping per warehouse: reserve, reject, rebuild."""
import pytest

from services.common import events
from services.inventory.stock import inventory_event, reserve, stock_from_events


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
