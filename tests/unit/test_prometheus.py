"""GET /metrics/prometheus on both services, without a broker: the text Prometheus would scrape."""
from __future__ import annotations

import socket
from collections import Counter

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from services.analytics.app import create_app as analytics_app
from services.analytics.metrics import fold_record
from services.common import events
from services.common.config import Config
from services.common.lag import LagUnavailable
from services.common.prometheus import PATH, LagCollector
from services.common.topics import INVENTORY_EVENTS, ORDER_EVENTS
from services.producer.app import create_app as producer_app

LAG_ROWS = [
    {"group": "inventory-grp", "topic": ORDER_EVENTS, "partition": 0, "end_offset": 10, "committed": 4,
     "lag": 6, "lag_seconds": 2.5},
    {"group": "inventory-grp", "topic": ORDER_EVENTS, "partition": 1, "end_offset": 0, "committed": None,
     "lag": 0, "lag_seconds": 0.0},
    {"group": "analytics-grp", "topic": INVENTORY_EVENTS, "partition": 2, "end_offset": 7, "committed": 3,
     "lag": 4, "lag_seconds": None},
]


def samples(text: str) -> dict:
    """{(sample name, frozenset of labels): value} of an exposition text."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def lab(**labels) -> frozenset:
    return frozenset(labels.items())


@pytest.fixture
def cfg():
    # A closed port: nothing here may reach a real broker (a lab stack may be running on 9092).
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return Config.from_env({"KAFKA_BOOTSTRAP": f"127.0.0.1:{port}"})


class FixedLag:
    """A lag source for the app: the rows given, or the 503 LagReader raises when Kafka is down."""

    def __init__(self, rows=None):
        self.rows = rows

    def read(self):
        if self.rows is None:
            raise LagUnavailable("lag unavailable: Kafka down")
        return self.rows


def test_lag_collector_uses_kafka_lag_exporter_names_and_labels():
    registry = CollectorRegistry()
    registry.register(LagCollector(lambda: LAG_ROWS))
    got = samples(generate_latest(registry).decode())
    assert got[("kafka_consumergroup_group_lag", lab(group="inventory-grp", topic=ORDER_EVENTS, partition="0"))] == 6
    assert got[("kafka_consumergroup_group_lag", lab(group="inventory-grp", topic=ORDER_EVENTS, partition="1"))] == 0
    assert got[("kafka_consumergroup_group_lag", lab(group="analytics-grp", topic=INVENTORY_EVENTS,
                                                     partition="2"))] == 4
    assert got[("kafka_consumergroup_group_lag_seconds",
                lab(group="inventory-grp", topic=ORDER_EVENTS, partition="0"))] == 2.5
    # Unknown age is left out rather than reported as 0.
    assert ("kafka_consumergroup_group_lag_seconds",
            lab(group="analytics-grp", topic=INVENTORY_EVENTS, partition="2")) not in got
    assert got[("lab_lag_read_success", lab())] == 1


def test_lag_collector_reports_an_unreachable_broker_and_lets_bugs_surface():
    def down():
        raise LagUnavailable("Kafka unavailable")

    registry = CollectorRegistry()
    registry.register(LagCollector(down))
    got = samples(generate_latest(registry).decode())
    assert got == {("lab_lag_read_success", lab()): 0}

    broken = CollectorRegistry()
    broken.register(LagCollector(lambda: [{"group": "g"}]))
    with pytest.raises(KeyError):
        generate_latest(broken)


def test_producer_exports_events_produced_failed_and_requests(cfg):
    app = producer_app(cfg)
    # What send_batch records after the broker acknowledged 3 events and failed 1.
    app.extensions["order_sender"].stats.record_acks(Counter({0: 2, 2: 1}), [1.0, 2.0, 3.0], errors=1)
    client = app.test_client()
    assert client.get("/healthz").status_code == 200
    r = client.get(PATH)
    assert r.status_code == 200 and r.content_type.startswith("text/plain")
    got = samples(r.text)
    assert got[("lab_producer_events_produced_total", lab(topic=ORDER_EVENTS, partition="0"))] == 2
    assert got[("lab_producer_events_produced_total", lab(topic=ORDER_EVENTS, partition="2"))] == 1
    assert got[("lab_producer_events_failed_total", lab(topic=ORDER_EVENTS))] == 1
    assert got[("lab_http_requests_total", lab(service="producer-order", method="GET", endpoint="/healthz",
                                               status="200"))] == 1
    assert got[("lab_http_request_duration_seconds_count",
                lab(service="producer-order", method="GET", endpoint="/healthz"))] == 1


def _fold(app, records):
    live = app.extensions["live_metrics"]
    with live.lock:
        for topic, partition, value in records:
            fold_record(live.state, topic, partition, value)


@pytest.mark.parametrize("orders_per_partition", [(1, 0, 2), (5, 3, 0)])
def test_analytics_exports_consumed_dead_letters_and_lag_consistent_with_json(cfg, orders_per_partition):
    app = analytics_app(cfg, start_consumer=False)
    app.extensions["lag_reader"] = FixedLag(LAG_ROWS)
    records = [(ORDER_EVENTS, p, events.encode(events.new_order("pizza", 1)))
               for p, n in enumerate(orders_per_partition) for _ in range(n)]
    _fold(app, records + [(ORDER_EVENTS, 1, b"not json"), (INVENTORY_EVENTS, 0, b"{}")])
    client = app.test_client()
    got = samples(client.get(PATH).text)
    for p, n in enumerate(orders_per_partition):
        key = ("lab_analytics_events_consumed_total", lab(topic=ORDER_EVENTS, partition=str(p)))
        assert got.get(key, 0) == n
    assert got[("lab_analytics_dead_letters_total", lab(topic=ORDER_EVENTS))] == 1
    assert got[("lab_analytics_dead_letters_total", lab(topic=INVENTORY_EVENTS))] == 1
    assert got[("kafka_consumergroup_group_lag", lab(group="inventory-grp", topic=ORDER_EVENTS, partition="0"))] == 6
    # The JSON /metrics and the Prometheus view count the same state.
    js = client.get("/metrics").json
    consumed = sum(v for (name, labels), v in got.items()
                   if name == "lab_analytics_events_consumed_total" and ("topic", ORDER_EVENTS) in labels)
    assert js["orders_total"] == consumed == sum(orders_per_partition)
    assert js["dead_letters_total"] == 2


def test_analytics_scrape_still_answers_when_kafka_is_down(cfg):
    app = analytics_app(cfg, start_consumer=False)
    app.extensions["lag_reader"] = FixedLag(None)
    r = app.test_client().get(PATH)
    assert r.status_code == 200
    got = samples(r.text)
    assert got[("lab_lag_read_success", lab())] == 0
    assert not any(name.startswith("kafka_consumergroup") for name, _ in got)
