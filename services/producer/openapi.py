"""producer-order's routes as OpenAPI operations, for GET /openapi.json (services/common/openapi.py)."""
from __future__ import annotations

from typing import Any

from flask import Flask

from services.common import events
from services.common.config import Config
from services.common.openapi import LATENCY, counts, error_response, init_openapi, json_body, json_response

DESCRIPTION = "HTTP -> OrderEvents. A 2xx means the broker acknowledged every event of the request."

ACKED_ORDER = {
    "type": "object",
    "properties": {"order_id": {"type": "string"}, "partition": {"type": "integer", "minimum": 0},
                   "offset": {"type": "integer", "minimum": 0}},
    "required": ["order_id", "partition", "offset"],
}

BULK_SUMMARY: dict[str, Any] = {
    "type": "object",
    "properties": {
        "requested": {"type": "integer", "minimum": 1},
        "produced": {"type": "integer", "minimum": 0},
        "failed": {"type": "integer", "minimum": 0},
        "item": {"type": "string"},
        "duration_s": {"type": "number", "minimum": 0},
        "events_per_s": {"type": "number", "minimum": 0},
        "by_partition": counts("acknowledged events per partition"),
        "error": {"type": "string", "description": "only when some events were not acknowledged"},
    },
    "required": ["requested", "produced", "failed", "item", "duration_s", "events_per_s", "by_partition"],
}

STATS = {
    "type": "object",
    "properties": {
        "events_acked_total": {"type": "integer", "minimum": 0},
        "events_failed_total": {"type": "integer", "minimum": 0},
        "bulk_requests_total": {"type": "integer", "minimum": 0},
        "last_bulk": {"oneOf": [BULK_SUMMARY, {"type": "null"}]},
        "best_bulk_events_per_s": {"type": "number", "minimum": 0},
        "by_partition": counts("acknowledged events per partition since start"),
        "send_latency_ms": LATENCY,
        "uptime_s": {"type": "number", "minimum": 0},
    },
    "required": ["events_acked_total", "events_failed_total", "bulk_requests_total", "last_bulk",
                 "best_bulk_events_per_s", "by_partition", "send_latency_ms", "uptime_s"],
}


def paths(cfg: Config) -> dict[str, dict[str, dict]]:
    """The routes of services/producer/app.py; the bodies are the schemas events.py validates them with."""
    return {
        "/order": {"post": {
            "summary": "One order, answered once the broker acknowledged it",
            "requestBody": json_body(events.ORDER_REQUEST),
            "responses": {
                "201": json_response("acknowledged: where the event is", ACKED_ORDER),
                "503": error_response("Kafka unavailable or did not acknowledge; produced is 0",
                                      produced={"type": "integer", "minimum": 0}),
            }}},
        "/orders/bulk": {"post": {
            "summary": f"n generated orders (n <= MAX_BULK_N = {cfg.max_bulk_n}), answered once all are acknowledged",
            "requestBody": json_body(events.bulk_request_schema(cfg.max_bulk_n),
                                     f"item '{events.MIXED}' draws items from the catalog and qty from "
                                     f"{events.MIXED_QTY[0]}..{events.MIXED_QTY[1]}, so it takes no qty"),
            "responses": {
                "201": json_response("every event acknowledged", BULK_SUMMARY),
                "503": error_response("some events not acknowledged (with the counts), or Kafka unavailable",
                                      **BULK_SUMMARY["properties"]),
            }}},
        "/stats": {"get": {
            "summary": "What this process sent: totals, bulk rates, partition spread, send latency",
            "responses": {"200": json_response("since the process started", STATS)}}},
    }


def init_app(app: Flask, cfg: Config) -> None:
    """Serve producer-order's GET /openapi.json."""
    init_openapi(app, cfg, "producer-order", DESCRIPTION, paths(cfg))
