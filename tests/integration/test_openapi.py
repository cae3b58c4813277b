"""The real stack's answers, successes included, match the OpenAPI document each service serves."""
from __future__ import annotations

import pytest

from tests.integration.kafka_reads import wait_for
from tests.unit.openapi_check import check


@pytest.fixture(scope="module")
def documents(stack, http) -> dict:
    docs = {}
    for base in (stack.producer_url, stack.analytics_url):
        r = http.get(base + "/openapi.json", timeout=30)
        assert r.status_code == 200
        docs[base] = r.json()
    return docs


def answer_matches(http, documents, base, method, path, status, **kwargs):
    r = http.request(method, base + path, timeout=60, **kwargs)
    assert r.status_code == status, r.text
    ctype = r.headers["Content-Type"]
    check(documents[base], path, method, r.status_code, ctype, r.json() if ctype.startswith("application/json")
          else r.text)
    return r


def test_producer_answers_match_its_document(stack, http, documents):
    base = stack.producer_url
    answer_matches(http, documents, base, "GET", "/healthz", 200)
    answer_matches(http, documents, base, "POST", "/order", 201, json={"item": "pizza", "qty": 2})
    answer_matches(http, documents, base, "POST", "/orders/bulk", 201, json={"n": 50, "item": "mixed", "seed": 7})
    answer_matches(http, documents, base, "POST", "/orders/bulk", 400, json={"n": 0, "item": "pizza"})
    answer_matches(http, documents, base, "POST", "/order", 415, data="x", headers={"Content-Type": "text/plain"})
    stats = answer_matches(http, documents, base, "GET", "/stats", 200).json()
    # Acknowledged sends were recorded, so the latency percentiles and last_bulk are filled in.
    assert stats["send_latency_ms"]["p99"] is not None and stats["last_bulk"] is not None
    answer_matches(http, documents, base, "GET", "/metrics/prometheus", 200)


def test_analytics_answers_match_its_document(stack, http, documents):
    base = stack.analytics_url
    answer_matches(http, documents, base, "GET", "/healthz", 200)
    http.post(stack.producer_url + "/orders/bulk", json={"n": 20, "item": "mixed"}, timeout=60).raise_for_status()
    # Once events were folded and both groups committed, the percentiles and lag rows are filled in.
    def filled_in():
        m = http.get(base + "/metrics", timeout=30).json()
        return m["latency_ms"]["p99"] is not None and bool(m["lag"])

    wait_for(filled_in, timeout_s=60, what="folded events and lag rows")
    answer_matches(http, documents, base, "GET", "/metrics", 200)
    answer_matches(http, documents, base, "POST", "/replay", 200)
    answer_matches(http, documents, base, "GET", "/openapi.json", 200)
