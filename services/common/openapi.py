"""GET /openapi.json: a service's API as OpenAPI 3.1, built from the schemas that validate its requests."""
from __future__ import annotations

from typing import Any

from flask import Flask, jsonify

from services.common.config import Config
from services.common.prometheus import PATH as PROMETHEUS_PATH

PATH = "/openapi.json"
VERSION = "1"

# What services.common.http turns every ApiError, validation error and HTTP error into.
ERROR = {
    "type": "object",
    "properties": {"error": {"type": "string", "description": "what went wrong, for a person to read"}},
    "required": ["error"],
}

# A latency summary in ms (services/common/percentiles.py): null until there is a sample.
LATENCY = {
    "type": "object",
    "properties": {"samples": {"type": "integer", "minimum": 0},
                   **{k: {"type": ["number", "null"]} for k in ("p50", "p95", "p99", "max")}},
    "required": ["samples", "p50", "p95", "p99", "max"],
}


def counts(description: str) -> dict:
    """A JSON object of name -> count (JSON keys are strings, so partitions are "0", "1", ...)."""
    return {"type": "object", "description": description,
            "additionalProperties": {"type": "integer", "minimum": 0}}


_HEALTH = {
    "type": "object",
    "properties": {
        "status": {"enum": ["ok", "error"]},
        "service": {"type": "string"},
        "kafka": {"enum": ["checking", "ok", "unreachable", "refused"]},
        "error": {"type": "string", "description": "why Kafka refused this service (TLS, login)"},
    },
    "required": ["status", "service"],
}


def json_response(description: str, schema: dict) -> dict:
    """One OpenAPI response whose body is JSON of the given schema."""
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def error_response(description: str, schema: dict = ERROR, **extra: dict) -> dict:
    """A response with the error shape; extra names the properties that come with it (ApiError's extra)."""
    if extra:
        schema = {**schema, "properties": {**extra, **schema["properties"]}}
    return json_response(description, schema)


def json_body(schema: dict, description: str = "") -> dict:
    """A required JSON request body: the same schema the service validates it with."""
    body = {"required": True, "content": {"application/json": {"schema": schema}}}
    return {**body, "description": description} if description else body


def document(cfg: Config, service: str, description: str, paths: dict[str, dict[str, dict]]) -> dict:
    """The OpenAPI document of a service: its own paths plus what services.common.http serves on every app."""
    all_paths = {**paths, **_shared_paths(service)}
    for ops in all_paths.values():
        for method, op in ops.items():
            # Every answer that is not listed (404, 405, a bug's 500) still has the error shape.
            op["responses"].setdefault("default", error_response("any other error"))
            if "requestBody" in op:
                _body_errors(op, cfg)
            if method == "post" and cfg.api_token:
                op["security"] = [{"bearer": []}]
                op["responses"].setdefault("401", error_response("missing or wrong bearer token"))
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": service, "version": VERSION, "description": description},
        "paths": all_paths,
        "components": {"schemas": {"Error": ERROR}},
    }
    if cfg.api_token:
        doc["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer",
                                                           "description": "LAB_API_TOKEN"}}
    return doc


def _body_errors(op: dict, cfg: Config) -> None:
    # The checks services.common.http makes on a body before its route validates it.
    responses = op["responses"]
    responses.setdefault("400", error_response("the body is not JSON, not an object, or not valid"))
    responses.setdefault("413", error_response(f"the body is over MAX_BODY_BYTES ({cfg.max_body_bytes})"))
    responses.setdefault("415", error_response("Content-Type is not application/json"))


def _shared_paths(service: str) -> dict[str, dict[str, dict]]:
    return {
        "/healthz": {"get": {
            "summary": f"Is {service} up, and can it reach Kafka?",
            "responses": {"200": json_response("up (an unreachable broker is reported, not a fault)", _HEALTH),
                          "503": error_response("Kafka refused this service's connection", _HEALTH)}}},
        PROMETHEUS_PATH: {"get": {
            "summary": "Prometheus exposition of the service's metrics",
            "responses": {"200": {"description": "Prometheus text format",
                                  "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
        PATH: {"get": {
            "summary": "This document",
            "responses": {"200": json_response("OpenAPI 3.1", {"type": "object", "required": ["openapi", "paths"]})}}},
    }


def init_openapi(app: Flask, cfg: Config, service: str, description: str, paths: dict[str, dict[str, dict]]) -> None:
    """Serve the service's document at GET /openapi.json; it is built once, from the app's config."""
    doc = document(cfg, service, description, paths)

    @app.get(PATH)
    def openapi():
        return jsonify(doc)
