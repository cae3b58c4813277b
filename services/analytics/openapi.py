"""analytics-consumer's routes as OpenAPI operations, for GET /openapi.json (services/common/openapi.py)."""
from __future__ import annotations

from typing import Any

from flask import Flask

from services.common.config import Config
from services.common.openapi import LATENCY, counts, error_response, init_openapi, json_response

DESCRIPTION = ("OrderEvents + InventoryEvents -> live metrics. POST /replay refolds both topics "
               "from offset 0 and compares the result with the live view.")

_INT = {"type": "integer", "minimum": 0}
_NUMBER = {"type": "number", "minimum": 0}

# services/analytics/metrics.py snapshot(): what a replay must reproduce exactly.
METRICS_SNAPSHOT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "orders_total": _INT,
        "inventory_events_total": _INT,
        "qty_total": _INT,
        "orders_by_item": counts("orders per item"),
        "qty_by_item": counts("quantity ordered per item"),
        "reserved": _INT,
        "rejected": _INT,
        "reserved_qty_by_item": counts("quantity reserved per item"),
        "stock_by_item": {"type": "object", "additionalProperties": {"type": "integer"},
                          "description": "stock left per item, summed over the warehouses"},
        "events_by_partition": {"type": "object", "description": "topic -> partition -> events",
                                "additionalProperties": counts("events per partition")},
        "latency_ms": LATENCY,
        "dead_letters": counts("dead-lettered records per topic"),
        "dead_letters_total": _INT,
    },
    "required": ["orders_total", "inventory_events_total", "qty_total", "orders_by_item", "qty_by_item",
                 "reserved", "rejected", "reserved_qty_by_item", "stock_by_item", "events_by_partition",
                 "latency_ms", "dead_letters", "dead_letters_total"],
}

# services/common/lag.py PartitionLag.
PARTITION_LAG = {
    "type": "object",
    "properties": {
        "group": {"type": "string"}, "topic": {"type": "string"}, "partition": _INT, "end_offset": _INT,
        "committed": {"type": ["integer", "null"], "minimum": 0}, "lag": _INT,
        "lag_seconds": {"type": ["number", "null"], "minimum": 0},
    },
    "required": ["group", "topic", "partition", "end_offset", "committed", "lag", "lag_seconds"],
}

METRICS = {
    "type": "object",
    "properties": {
        **METRICS_SNAPSHOT["properties"],
        "throughput": {
            "type": "object",
            "properties": {"events_per_s_last_10s": _NUMBER, "events_consumed_live": _INT,
                           "events_rebuilt_at_start": _INT},
            "required": ["events_per_s_last_10s", "events_consumed_live", "events_rebuilt_at_start"],
        },
        "consumer": {
            "type": "object",
            "properties": {"group": {"type": "string"}, "phase": {"type": "string"},
                           "error": {"type": ["string", "null"]}},
            "required": ["group", "phase", "error"],
        },
        "lag": {"oneOf": [{"type": "array", "items": PARTITION_LAG}, {"type": "null"}]},
        "lag_error": {"type": "string", "description": "why lag is null"},
    },
    "required": [*METRICS_SNAPSHOT["required"], "throughput", "consumer", "lag"],
}

REPLAY = {
    "type": "object",
    "properties": {
        "before": METRICS_SNAPSHOT,
        "after": METRICS_SNAPSHOT,
        "diff": {"type": "object", "description": "flattened metric -> its change; empty when replay agrees",
                 "additionalProperties": {"type": "object", "properties": {
                     "before": {}, "after": {}, "delta": {"type": ["number", "null"]}},
                     "required": ["before", "after", "delta"]}},
        "events_replayed": _INT,
        "end_offsets": counts("topic-partition -> the end offset the replay read up to"),
        "duration_s": _NUMBER,
        "events_per_s": _NUMBER,
        "group_id": {"type": "string"},
    },
    "required": ["before", "after", "diff", "events_replayed", "end_offsets", "duration_s", "events_per_s",
                 "group_id"],
}


def paths(cfg: Config) -> dict[str, dict[str, dict]]:
    """The routes of services/analytics/app.py."""
    return {
        "/metrics": {"get": {
            "summary": "The live metrics, consumer state and both groups' lag",
            "responses": {"200": json_response("always answers; lag is null with lag_error when unreadable",
                                               METRICS)}}},
        "/replay": {"post": {
            "summary": "Recompute the metrics from offset 0 with a disposable group and diff them with the live ones",
            "responses": {
                "200": json_response("the replay and its diff", REPLAY),
                "409": error_response("a replay is already running"),
                "503": error_response("Kafka unavailable"),
            }}},
    }


def init_app(app: Flask, cfg: Config) -> None:
    """Serve analytics-consumer's GET /openapi.json."""
    init_openapi(app, cfg, "analytics-consumer", DESCRIPTION, paths(cfg))
