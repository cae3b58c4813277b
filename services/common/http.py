"""What both HTTP services share: JSON errors, body parsing, the optional token, health, Prometheus."""
from __future__ import annotations

import hmac
import logging
import time

from flask import Flask, Response, g, jsonify, request
from prometheus_client import CollectorRegistry, Counter, GCCollector, Histogram, ProcessCollector, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from werkzeug.exceptions import HTTPException

from services.common.config import Config
from services.common.events import ValidationError
from services.common.prometheus import PATH as PROMETHEUS_PATH, FrozenHeapCollector

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error at the HTTP edge: becomes {"error": message, ...extra} with the given status."""

    def __init__(self, status: int, message: str, **extra):
        super().__init__(message)
        self.status, self.message, self.extra = status, message, extra


def json_body() -> dict:
    """The request body as a JSON object, or an ApiError that says what is wrong with it."""
    if not request.is_json:
        raise ApiError(415, "Content-Type must be application/json")
    doc = request.get_json(silent=True)
    if doc is None:
        raise ApiError(400, "body is not valid JSON")
    if not isinstance(doc, dict):
        raise ApiError(400, "body must be a JSON object")
    return doc


def init_app(app: Flask, cfg: Config, service: str, access=None) -> CollectorRegistry:
    """Wire errors, limits, auth, health and metrics into app; return its Prometheus registry.

    access: the service's AccessCheck (services/common/kafka_access.py); /healthz reports its refusal.
    """
    # Bodies over the limit are refused by werkzeug with 413 before we read them.
    app.config["MAX_CONTENT_LENGTH"] = cfg.max_body_bytes
    app.json.sort_keys = False

    # One registry per app, so tests can build many apps in one process.
    registry = CollectorRegistry()
    # The process' own figures (RSS, CPU, collections), as prometheus_client's default registry has.
    ProcessCollector(registry=registry)
    GCCollector(registry=registry)
    registry.register(FrozenHeapCollector())
    requests_total = Counter("lab_http_requests", "HTTP requests served",
                             ["service", "method", "endpoint", "status"], registry=registry)
    latency = Histogram("lab_http_request_duration_seconds", "HTTP request latency",
                        ["service", "method", "endpoint"], registry=registry,
                        buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))

    @app.errorhandler(ApiError)
    def _api_error(err: ApiError):
        return jsonify({"error": err.message, **err.extra}), err.status

    @app.errorhandler(ValidationError)
    def _validation_error(err: ValidationError):
        return jsonify({"error": str(err)}), 400

    @app.errorhandler(HTTPException)
    def _http_error(err: HTTPException):
        return jsonify({"error": err.description or err.name}), err.code

    @app.errorhandler(Exception)
    def _bug(err: Exception):
        # A bug: log the traceback for us, never send it to the client.
        log.exception("unhandled error on %s %s", request.method, request.path)
        return jsonify({"error": "internal error; see the service log"}), 500

    @app.before_request
    def _start():
        g.t0 = time.perf_counter()
        # Reads stay open; with LAB_API_TOKEN set, every POST needs the bearer token.
        if cfg.api_token and request.method == "POST":
            given = request.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), cfg.authorization()["Authorization"].encode()):
                raise ApiError(401, "missing or wrong bearer token (Authorization: Bearer <LAB_API_TOKEN>)")

    @app.after_request
    def _count(resp):
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        requests_total.labels(service, request.method, endpoint, str(resp.status_code)).inc()
        if "t0" in g:
            latency.labels(service, request.method, endpoint).observe(time.perf_counter() - g.t0)
        return resp

    @app.get("/healthz")
    def healthz():
        # A refused connection (TLS, login) will not heal by itself: say so, in its one line. An
        # unreachable broker is not a fault of this service: it stays "ok" and answers 503s per request.
        if access is not None and access.problem:
            return jsonify({"status": "error", "service": service, "error": access.problem}), 503
        body = {"status": "ok", "service": service}
        if access is not None:
            body["kafka"] = access.state   # checking until the first connection attempt has an answer
        return jsonify(body)

    @app.get(PROMETHEUS_PATH)
    def prometheus():
        return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)

    return registry
