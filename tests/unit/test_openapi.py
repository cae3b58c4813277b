"""GET /openapi.json on both services, without a broker: a valid OpenAPI 3.1 document of every route."""
from __future__ import annotations

import socket

import jsonschema
import pytest
from openapi_spec_validator import validate

from services.analytics.app import create_app as analytics_app
from services.common import events
from services.common.config import Config
from services.common.lag import LagUnavailable
from services.producer.app import create_app as producer_app
from tests.unit.openapi_check import check, response_schema

IMPLICIT = {"HEAD", "OPTIONS"}  # Flask adds these to every rule


class DownLag:
    def read(self):
        raise LagUnavailable("lag unavailable: Kafka down")


def closed_port_config(**env) -> Config:
    # A closed port: nothing here may reach a real broker (a lab stack may be running on 9092).
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return Config.from_env({"KAFKA_BOOTSTRAP": f"127.0.0.1:{port}", **env})


def build(service: str, **env):
    cfg = closed_port_config(**env)
    if service == "producer":
        return producer_app(cfg)
    app = analytics_app(cfg, start_consumer=False)
    app.extensions["lag_reader"] = DownLag()
    return app


def served(app) -> dict:
    r = app.test_client().get("/openapi.json")
    assert r.status_code == 200 and r.is_json
    return r.get_json()


@pytest.mark.parametrize("service", ["producer", "analytics"])
@pytest.mark.parametrize("env", [{}, {"LAB_API_TOKEN": "s3cret"}])
def test_document_is_valid_openapi_31_and_lists_every_route(service, env):
    app = build(service, **env)
    doc = served(app)
    validate(doc)
    assert doc["openapi"].startswith("3.1")
    routes = {rule.rule: {m.lower() for m in rule.methods - IMPLICIT} for rule in app.url_map.iter_rules()}
    assert {path: set(ops) for path, ops in doc["paths"].items()} == routes
    for ops in doc["paths"].values():
        for method, op in ops.items():
            assert "default" in op["responses"], "unlisted errors have the error shape too"
            # With LAB_API_TOKEN set every POST needs the bearer token; reads never do.
            guarded = method == "post" and bool(env)
            assert op.get("security") == ([{"bearer": []}] if guarded else None)
            assert ("401" in op["responses"]) == guarded


def test_request_bodies_are_the_schemas_that_validate_them():
    doc = served(build("producer", MAX_BULK_N="500"))
    body = {path: doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
            for path in ("/order", "/orders/bulk")}
    assert body["/order"] == events.ORDER_REQUEST
    assert body["/orders/bulk"] == events.bulk_request_schema(500)
    assert body["/orders/bulk"]["properties"]["n"]["maximum"] == 500


@pytest.mark.parametrize("service, method, path, kwargs, status", [
    ("producer", "GET", "/healthz", {}, 200),
    ("producer", "GET", "/stats", {}, 200),
    ("producer", "GET", "/metrics/prometheus", {}, 200),
    ("producer", "POST", "/order", {"json": {"item": "pizza"}}, 400),
    ("producer", "POST", "/order", {"data": "{}", "content_type": "text/plain"}, 415),
    ("producer", "POST", "/order", {"json": {"item": "pizza", "qty": 1, "x": "y" * 70_000}}, 413),
    ("producer", "POST", "/orders/bulk", {"json": {"n": 0, "item": "pizza"}}, 400),
    ("producer", "POST", "/orders/bulk", {"json": {"n": 5, "item": "mixed", "qty": 2}}, 400),
    ("producer", "GET", "/order", {}, 405),
    ("analytics", "GET", "/healthz", {}, 200),
    ("analytics", "GET", "/metrics", {}, 200),
    ("analytics", "GET", "/openapi.json", {}, 200),
    ("analytics", "DELETE", "/replay", {}, 405),
])
def test_answers_without_a_broker_match_the_document(service, method, path, kwargs, status):
    app = build(service, MAX_BODY_BYTES="65536")
    doc = served(app)
    r = app.test_client().open(path, method=method, **kwargs)
    assert r.status_code == status
    documented = path if method.lower() in doc["paths"][path] else None
    if documented is None:
        # A method the route does not have: the error shape, as for any path it does not list.
        jsonschema.Draft202012Validator(doc["components"]["schemas"]["Error"]).validate(r.get_json())
    else:
        check(doc, path, method, r.status_code, r.content_type, r.get_json() if r.is_json else r.text)


def test_a_wrong_answer_is_caught():
    doc = served(build("producer"))
    with pytest.raises(jsonschema.ValidationError):
        check(doc, "/order", "POST", 201, "application/json", {"order_id": "x", "partition": -1, "offset": 0})
    with pytest.raises(KeyError):
        response_schema(doc, "/stats", "GET", 200, "text/html")
