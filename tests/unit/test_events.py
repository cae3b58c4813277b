"""Request validation and record decoding: every bad input is named, nothing bad gets through."""
import json

import pytest
from hypothesis import given, settings, strategies as st

from services.common import events
from services.common.events import DecodeError, ValidationError
from services.inventory.stock import stock_snapshot


@pytest.mark.parametrize("body", [
    {"item": "pizza", "qty": 1},
    {"item": "unicorn", "qty": events.MAX_QTY},
    {"item": "x" * events.MAX_ITEM_LEN, "qty": 3},
])
def test_valid_order_requests(body):
    assert events.validate_order_request(body) == body


@pytest.mark.parametrize("body, fragment", [
    ({"qty": 1}, "'item' is a required property"),
    ({"item": "pizza"}, "'qty' is a required property"),
    ({"item": "pizza", "qty": 1, "colour": "red"}, "unknown field: 'colour'"),
    ({"item": "", "qty": 1}, "item"),
    ({"item": "  ", "qty": 1}, "item"),
    ({"item": "x" * (events.MAX_ITEM_LEN + 1), "qty": 1}, "item"),
    ({"item": 7, "qty": 1}, "item"),
    ({"item": "pizza", "qty": 0}, "qty"),
    ({"item": "pizza", "qty": -2}, "qty"),
    ({"item": "pizza", "qty": 1.5}, "qty"),
    ({"item": "pizza", "qty": "1"}, "qty"),
    ({"item": "pizza", "qty": True}, "boolean"),
    ({"item": "pizza", "qty": events.MAX_QTY + 1}, "qty"),
])
def test_invalid_order_requests_name_the_problem(body, fragment):
    with pytest.raises(ValidationError) as err:
        events.validate_order_request(body)
    assert fragment in str(err.value)


@pytest.mark.parametrize("body", [
    {"n": 1, "item": "mixed"},
    {"n": 100, "item": "mixed", "seed": 7},
    {"n": 5, "item": "pizza", "qty": 3},
    {"n": 10, "item": "unicorn"},
])
def test_valid_bulk_requests(body):
    assert events.validate_bulk_request(body, max_n=100) == body


@pytest.mark.parametrize("body, fragment", [
    ({"item": "mixed"}, "'n' is a required property"),
    ({"n": 0, "item": "mixed"}, "n"),
    ({"n": 101, "item": "mixed"}, "maximum of 100"),
    ({"n": "10", "item": "mixed"}, "n"),
    ({"n": True, "item": "mixed"}, "boolean"),
    ({"n": 10, "item": "mixed", "qty": 2}, "not allowed with item 'mixed'"),
    ({"n": 10, "item": "mixed", "extra": 1}, "unknown field"),
])
def test_invalid_bulk_requests(body, fragment):
    with pytest.raises(ValidationError) as err:
        events.validate_bulk_request(body, max_n=100)
    assert fragment in str(err.value)


def test_mixed_bulk_draws_from_catalog_and_is_reproducible_with_a_seed():
    a = list(events.bulk_orders(200, "mixed", seed=42))
    b = list(events.bulk_orders(200, "mixed", seed=42))
    strip = lambda evs: [(e["order_id"], e["item"], e["qty"]) for e in evs]  # noqa: E731
    assert strip(a) == strip(b)
    assert {e["item"] for e in a} <= set(events.CATALOG)
    assert len({e["item"] for e in a}) == len(events.CATALOG)
    lo, hi = events.MIXED_QTY
    assert all(lo <= e["qty"] <= hi for e in a)
    assert len({e["order_id"] for e in a}) == 200


def test_order_round_trip():
    ev = events.new_order("pizza", 2)
    assert events.decode_order(events.encode(ev)) == ev
    assert set(ev) == {"schema", "order_id", "item", "qty", "created_ms"}


@pytest.mark.parametrize("raw, fragment", [
    (None, "null"),
    (b"\xff\xfe", "not JSON"),
    (b"not json", "not JSON"),
    (b"[1, 2]", "not a JSON object"),
    (json.dumps({"schema": 2, "order_id": "a", "item": "x", "qty": 1, "created_ms": 1}).encode(), "schema version"),
    (json.dumps({"schema": 1, "item": "x", "qty": 1, "created_ms": 1}).encode(), "order_id"),
    (json.dumps({"schema": 1, "order_id": "a", "item": "x", "qty": "many", "created_ms": 1}).encode(), "qty"),
])
def test_malformed_records_are_decode_errors(raw, fragment):
    with pytest.raises(DecodeError) as err:
        events.decode_order(raw)
    assert fragment in str(err.value)


# The fast path in front of jsonschema must never accept what the schema rejects: every
# document it lets through must pass the full check (so decisions and messages are unchanged).
_ANY = st.one_of(st.none(), st.booleans(), st.integers(-5, 2**63), st.floats(allow_nan=False),
                 st.dictionaries(st.text(max_size=3), st.one_of(st.integers(), st.booleans(), st.floats(), st.text()),
                                 max_size=3),
                 st.sampled_from([0, 1, -1, events.MAX_QTY, events.MAX_QTY + 1, 2.0, 1.5, True, False]),
                 st.sampled_from(["", " ", "pizza", "a\n", " a", "a ", "x" * 64, "x" * 65, "reserved", "rejected",
                                  "\u00e9", "\t", "a b"]),
                 st.text(max_size=70), st.lists(st.integers(), max_size=2))
_FIELDS = {
    "order_request": ("item", "qty"),
    "order_event": ("schema", "order_id", "item", "qty", "created_ms"),
    "inventory_event": ("schema", "order_id", "item", "qty", "status", "stock_left", "warehouse",
                        "order_created_ms", "processed_ms"),
    "stock_snapshot": ("schema", "warehouse", "orders_offset", "stock"),
}
_VALID = {"schema": 1, "order_id": "abc", "item": "pizza", "qty": 3, "created_ms": 1700000000000,
          "status": "reserved", "stock_left": 12, "warehouse": 2, "order_created_ms": 1, "processed_ms": 2,
          "orders_offset": 40, "stock": {"pizza": 3, "sushi": -1}}


def _docs(kind):
    fields = _FIELDS[kind]
    # Mostly valid values with one or more replaced, dropped or extra keys: the cases near the edge.
    valid = {k: _VALID[k] for k in fields}
    return st.builds(
        lambda repl, drop, extra: {**{k: v for k, v in {**valid, **repl}.items() if k not in drop}, **extra},
        st.dictionaries(st.sampled_from(fields), _ANY, max_size=3),
        st.sets(st.sampled_from(fields), max_size=2),
        st.dictionaries(st.sampled_from(["extra", "colour"]), _ANY, max_size=1),
    )


@pytest.mark.parametrize("kind", sorted(_FIELDS))
@settings(max_examples=400, deadline=None)
@given(data=st.data())
def test_fast_checks_accept_only_what_the_schema_accepts(kind, data):
    doc = data.draw(_docs(kind))
    if events._fast_checks[kind](doc):
        events._check(events._validators[kind], doc)  # raises if the schema disagrees


@pytest.mark.parametrize("kind, doc", [
    ("order_request", {"item": "pizza", "qty": 1}),
    ("order_event", events.new_order("pizza", 2)),
    ("inventory_event", {k: _VALID[k] for k in _FIELDS["inventory_event"]}),
    ("stock_snapshot", stock_snapshot(1, {"pizza": 3}, 17)),
])
def test_fast_checks_take_the_common_case(kind, doc):
    assert events._fast_checks[kind](doc)


def test_stock_snapshot_round_trip_and_rejects():
    snap = stock_snapshot(2, {"pizza": 5, "taco": 0}, 1234)
    assert events.decode_stock_snapshot(events.encode(snap)) == snap
    with pytest.raises(DecodeError, match="stock"):
        events.decode_stock_snapshot(events.encode({**snap, "stock": {"pizza": "5"}}))
    with pytest.raises(DecodeError, match="orders_offset"):
        events.decode_stock_snapshot(events.encode({k: v for k, v in snap.items() if k != "orders_offset"}))


@pytest.mark.parametrize("value, reason", [
    (b"\xef\xbb\xbf" + events.encode({"schema": 1}), "byte order mark"),
    ('{"schema": 1}'.encode("utf-16"), "not JSON"),
    (b"\xff\xfe", "not JSON"),
    (12345, "not JSON"),
])
def test_values_that_are_not_utf8_json_are_dead_letters(value, reason):
    with pytest.raises(events.DecodeError, match=reason):
        events.decode_order(value)


def test_a_valid_order_decodes_from_bytes_bytearray_or_str():
    raw = events.encode(events.new_order("pizza", 2))
    for value in (raw, bytearray(raw), raw.decode()):
        assert events.decode_order(value)["item"] == "pizza"


def test_remembered_item_names_never_change_an_answer():
    ok = events.encode(events.new_order("pizza", 1))
    events.decode_order(ok)                      # "pizza" is remembered now
    assert "pizza" in events._VALID_ITEMS
    doc = events.new_order("pizza", 1)
    doc["item"] = " pizza"                       # leading space: the pattern refuses it
    with pytest.raises(events.DecodeError):
        events.decode_order(events.encode(doc))
    assert " pizza" not in events._VALID_ITEMS


def test_a_service_process_does_not_load_rfc3987_syntax():
    # That package's import compiles a grammar (3.5 s of CPU) and the lab's virtualenv has it
    # through JupyterLab; every service start and restart paid for it. Validation still works.
    import subprocess
    import sys
    code = ("import sys, services.common.events as e; "
            "e.validate_order_request({'item': 'pizza', 'qty': 1}); "
            "print(sys.modules.get('rfc3987_syntax') is None)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"
