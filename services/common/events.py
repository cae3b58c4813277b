"""The event schema: HTTP request validation, order and inventory events, their (de)serialisation."""
from __future__ import annotations

import json
import random
import re
import sys
import time
import uuid
from dataclasses import dataclass
from typing import Any

# jsonschema imports rfc3987_syntax when it is installed, for the "iri" format, and that import
# compiles a grammar: 3.5 s of CPU in every service process started from the lab's virtualenv
# (JupyterLab's jupyter-events brings it; the service image has not got it). No schema here uses
# a format, so the import is refused; a process that already has the module keeps it.
sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]

import jsonschema

SCHEMA_VERSION = 1

# The "mixed" catalog: bulk loads draw items uniformly from it, and qty uniformly
# from MIXED_QTY (inclusive). A seed makes the draw reproducible.
CATALOG: tuple[str, ...] = ("pizza", "burger", "sushi", "salad", "taco", "pasta", "ramen", "curry")
MIXED = "mixed"
MIXED_QTY = (1, 5)
MAX_QTY = 100          # one order's qty bound
MAX_ITEM_LEN = 64


class ValidationError(ValueError):
    """A request or record that does not fit the schema; the message names the problem."""


_ITEM: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": MAX_ITEM_LEN, "pattern": r"^\S(.*\S)?$"}
_QTY = {"type": "integer", "minimum": 1, "maximum": MAX_QTY}

ORDER_REQUEST = {
    "type": "object",
    "properties": {"item": _ITEM, "qty": _QTY},
    "required": ["item", "qty"],
    "additionalProperties": False,
}


def bulk_request_schema(max_n: int) -> dict:
    return {
        "type": "object",
        "properties": {
            "n": {"type": "integer", "minimum": 1, "maximum": max_n},
            "item": _ITEM,  # "mixed", a catalog item or any other short name
            "qty": _QTY,    # for a single-item bulk; "mixed" draws qty itself
            "seed": {"type": "integer"},
        },
        "required": ["n", "item"],
        "additionalProperties": False,
    }


# What every event says of its order.
_ORDER_FIELDS = {
    "schema": {"const": SCHEMA_VERSION},
    "order_id": {"type": "string", "minLength": 1},
    "item": _ITEM,
    "qty": _QTY,
}

_ORDER_EVENT = {
    "type": "object",
    "properties": {**_ORDER_FIELDS, "created_ms": {"type": "integer", "minimum": 0}},
    "required": ["schema", "order_id", "item", "qty", "created_ms"],
}

_INVENTORY_EVENT: dict[str, Any] = {
    "type": "object",
    "properties": {
        **_ORDER_FIELDS,
        "status": {"enum": ["reserved", "rejected"]},
        "stock_left": {"type": "integer"},
        "warehouse": {"type": "integer", "minimum": 0},
        "order_created_ms": {"type": "integer", "minimum": 0},
        "processed_ms": {"type": "integer", "minimum": 0},
    },
    "required": ["schema", "order_id", "item", "qty", "status", "stock_left", "warehouse",
                 "order_created_ms", "processed_ms"],
}

# InventoryState: one warehouse's whole stock, written by inventory-consumer in the same
# transaction as the InventoryEvents and OrderEvents offsets it sums up.
_STOCK_SNAPSHOT = {
    "type": "object",
    "properties": {
        "schema": {"const": SCHEMA_VERSION},
        "warehouse": {"type": "integer", "minimum": 0},
        "orders_offset": {"type": "integer", "minimum": 0},
        "stock": {"type": "object", "additionalProperties": {"type": "integer"}},
    },
    "required": ["schema", "warehouse", "orders_offset", "stock"],
}

_validators = {
    "stock_snapshot": jsonschema.Draft202012Validator(_STOCK_SNAPSHOT),
    "order_request": jsonschema.Draft202012Validator(ORDER_REQUEST),
    "order_event": jsonschema.Draft202012Validator(_ORDER_EVENT),
    "inventory_event": jsonschema.Draft202012Validator(_INVENTORY_EVENT),
}
_bulk_validators: dict[int, jsonschema.Draft202012Validator] = {}

# The fast path: jsonschema per record was over half of a replay's time (docs/tuning.md). These
# checks accept only documents the schemas above accept too (exact int and str types, the same
# regex); anything else goes through jsonschema, so decisions and messages stay jsonschema's.
_ITEM_RE = re.compile(_ITEM["pattern"])
_STATUSES = frozenset(_INVENTORY_EVENT["properties"]["status"]["enum"])


# Items already seen valid: a stream names the same few dozen items over and over, and the
# regex was the largest part of the fast path (0.5 of 0.7 us per order). Bounded, so a stream
# of made-up names cannot grow it without limit (once full, new names take the regex: slower,
# never a different answer). POST /order's validation shares it.
_VALID_ITEMS: set[str] = set()
_VALID_ITEMS_MAX = 4096


def _is_item(x) -> bool:
    if type(x) is not str:
        return False
    if x in _VALID_ITEMS:
        return True
    ok = 1 <= len(x) <= MAX_ITEM_LEN and _ITEM_RE.search(x) is not None
    if ok and len(_VALID_ITEMS) < _VALID_ITEMS_MAX:
        _VALID_ITEMS.add(x)
    return ok


def _is_qty(x) -> bool:
    return type(x) is int and 1 <= x <= MAX_QTY


def _is_count(x) -> bool:
    return type(x) is int and x >= 0


def _order_request_ok(doc) -> bool:
    # Exactly the two keys: additionalProperties is false.
    return type(doc) is dict and len(doc) == 2 and _is_item(doc.get("item")) and _is_qty(doc.get("qty"))


def _order_event_ok(doc: dict) -> bool:
    try:
        return (type(doc["schema"]) is int and doc["schema"] == SCHEMA_VERSION
                and type(doc["order_id"]) is str and doc["order_id"] != ""
                and _is_item(doc["item"]) and _is_qty(doc["qty"]) and _is_count(doc["created_ms"]))
    except KeyError:
        return False


def _inventory_event_ok(doc: dict) -> bool:
    try:
        return (type(doc["schema"]) is int and doc["schema"] == SCHEMA_VERSION
                and type(doc["order_id"]) is str and doc["order_id"] != ""
                and _is_item(doc["item"]) and _is_qty(doc["qty"])
                and type(doc["status"]) is str and doc["status"] in _STATUSES
                and type(doc["stock_left"]) is int and _is_count(doc["warehouse"])
                and _is_count(doc["order_created_ms"]) and _is_count(doc["processed_ms"]))
    except KeyError:
        return False


def _stock_snapshot_ok(doc: dict) -> bool:
    try:
        return (type(doc["schema"]) is int and doc["schema"] == SCHEMA_VERSION
                and _is_count(doc["warehouse"]) and _is_count(doc["orders_offset"])
                and type(doc["stock"]) is dict and all(type(v) is int for v in doc["stock"].values()))
    except KeyError:
        return False


_fast_checks = {"order_request": _order_request_ok, "order_event": _order_event_ok,
                "inventory_event": _inventory_event_ok, "stock_snapshot": _stock_snapshot_ok}


def _check(validator: jsonschema.Draft202012Validator, doc) -> None:
    # bool is an int in Python and in JSON Schema's eyes an integer is not; reject it explicitly.
    if isinstance(doc, dict):
        for key in ("qty", "n", "seed"):
            if isinstance(doc.get(key), bool):
                raise ValidationError(f"'{key}': must be an integer, not a boolean")
    error = jsonschema.exceptions.best_match(validator.iter_errors(doc))
    if error is not None:
        where = ".".join(str(p) for p in error.absolute_path)
        msg = error.message
        if error.validator == "additionalProperties":
            msg = "unknown field: " + msg.split("(")[-1].rstrip(")").replace(" was unexpected", "")
        raise ValidationError(f"'{where}': {msg}" if where else msg)


def validate_order_request(doc) -> dict:
    """Validate a POST /order body; returns it unchanged or raises ValidationError."""
    if not _order_request_ok(doc):
        _check(_validators["order_request"], doc)
    return doc


def validate_bulk_request(doc, max_n: int) -> dict:
    """Validate a POST /orders/bulk body against the cap max_n."""
    v = _bulk_validators.get(max_n)
    if v is None:
        v = _bulk_validators[max_n] = jsonschema.Draft202012Validator(bulk_request_schema(max_n))
    _check(v, doc)
    if doc["item"] == MIXED and "qty" in doc:
        raise ValidationError("'qty': not allowed with item 'mixed' (it draws qty from 1..5)")
    return doc


def now_ms() -> int:
    return int(time.time() * 1000)


def new_order(item: str, qty: int, created_ms: int | None = None) -> dict:
    """A new order event with a fresh order_id."""
    return {"schema": SCHEMA_VERSION, "order_id": uuid.uuid4().hex, "item": item, "qty": qty,
            "created_ms": now_ms() if created_ms is None else created_ms}


def bulk_orders(n: int, item: str, qty: int = 1, seed: int | None = None):
    """Yield n order events; 'mixed' draws from CATALOG and MIXED_QTY (reproducibly with a seed)."""
    rng = random.Random(seed)
    lo, hi = MIXED_QTY
    for _ in range(n):
        if item == MIXED:
            ev = new_order(rng.choice(CATALOG), rng.randint(lo, hi))
        else:
            ev = new_order(item, qty)
        if seed is not None:
            # Reproducible ids too, so a seeded bulk is the same data every time.
            ev["order_id"] = uuid.UUID(int=rng.getrandbits(128), version=4).hex
        yield ev


# One encoder: json.dumps with non-default separators builds a new JSONEncoder per call
# (2.7 us against 1.9 us per order, timeit), and every order and inventory event passes here.
_ENCODER = json.JSONEncoder(separators=(",", ":"))
_DECODER = json.JSONDecoder()
_UTF8_BOM = b"\xef\xbb\xbf"


def encode(event: dict) -> bytes:
    return _ENCODER.encode(event).encode()


@dataclass(frozen=True)
class DecodeError(Exception):
    """A record that is not a valid event: the reason goes into the dead-letter headers."""
    reason: str

    def __str__(self) -> str:
        return self.reason


def _decode(raw: bytes | None, kind: str) -> dict:
    if raw is None:
        raise DecodeError("empty record (null value)")
    try:
        # UTF-8 only (RFC 8259 for JSON between systems; every producer here writes it), then
        # one shared decoder: json.loads(bytes) first sniffs the encoding, 3.2 us against
        # 2.0 us per order, and every record of a rebuild or replay passes here.
        doc = _DECODER.decode(raw if type(raw) is str else str(raw, "utf-8"))
    except (UnicodeDecodeError, TypeError, json.JSONDecodeError) as exc:
        if isinstance(raw, (bytes, bytearray)) and raw.startswith(_UTF8_BOM):
            raise DecodeError("not JSON: starts with a UTF-8 byte order mark") from None
        raise DecodeError(f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise DecodeError("not a JSON object")
    if doc.get("schema") != SCHEMA_VERSION:
        raise DecodeError(f"unknown schema version: {doc.get('schema')!r}")
    if _fast_checks[kind](doc):
        return doc
    try:
        _check(_validators[kind], doc)
    except ValidationError as exc:
        raise DecodeError(f"invalid {kind.replace('_', ' ')}: {exc}") from None
    return doc


def decode_order(raw: bytes | None) -> dict:
    """Parse and validate an OrderEvents record value, or raise DecodeError."""
    return _decode(raw, "order_event")


def decode_inventory(raw: bytes | None) -> dict:
    """Parse and validate an InventoryEvents record value, or raise DecodeError."""
    return _decode(raw, "inventory_event")


def decode_stock_snapshot(raw: bytes | None) -> dict:
    """Parse and validate an InventoryState record value, or raise DecodeError."""
    return _decode(raw, "stock_snapshot")
