"""GET /metrics/prometheus on the running stack: real events, real consumer-group lag from the broker."""
from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from services.common.prometheus import PATH
from services.common.topics import ANALYTICS_GROUP, INVENTORY_EVENTS, INVENTORY_GROUP, ORDER_EVENTS
from tests.integration.kafka_reads import end_offsets, wait_for


def scrape(http, url: str) -> dict:
    """{metric sample name: [(labels, value), ...]} of one scrape."""
    r = http.get(url + PATH, timeout=60)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/plain")
    out: dict = {}
    for fam in text_string_to_metric_families(r.text):
        for s in fam.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def total(samples, **labels) -> float:
    return sum(v for lab, v in samples if all(lab.get(k) == w for k, w in labels.items()))


def test_producer_counts_what_the_broker_acknowledged(stack, http):
    before = scrape(http, stack.producer_url).get("lab_producer_events_produced_total", [])
    r = http.post(stack.producer_url + "/orders/bulk", json={"n": 30, "item": "mixed", "seed": 7}, timeout=60)
    assert r.status_code == 201
    by_partition = r.json()["by_partition"]
    after = scrape(http, stack.producer_url)["lab_producer_events_produced_total"]
    assert total(after) - total(before) == 30
    for partition, n in by_partition.items():
        assert total(after, partition=partition) - total(before, partition=partition) == n
    assert {lab["topic"] for lab, _ in after} == {ORDER_EVENTS}


def test_analytics_exports_consumed_events_and_lag_of_both_groups(stack, http):
    http.post(stack.producer_url + "/orders/bulk", json={"n": 20, "item": "pizza"}, timeout=60).raise_for_status()

    def caught_up():
        # Both groups have processed everything: lag 0 on every partition, counts match the topic.
        got = scrape(http, stack.analytics_url)
        ends = end_offsets(stack.bootstrap, [ORDER_EVENTS])
        lag = got.get("kafka_consumergroup_group_lag", [])
        consumed = total(got.get("lab_analytics_events_consumed_total", []), topic=ORDER_EVENTS)
        done = lag and all(v == 0 for _, v in lag) and consumed == sum(ends.values())
        return got if done else None

    got = wait_for(caught_up, 90, interval_s=1, what="both groups to catch up, as seen by /metrics/prometheus")
    want = {(INVENTORY_GROUP, ORDER_EVENTS, str(p)) for p in range(3)} | \
           {(ANALYTICS_GROUP, t, str(p)) for t in (ORDER_EVENTS, INVENTORY_EVENTS) for p in range(3)}
    for name in ("kafka_consumergroup_group_lag", "kafka_consumergroup_group_lag_seconds"):
        assert {(lab["group"], lab["topic"], lab["partition"]) for lab, _ in got[name]} == want, name
    assert all(v == 0 for _, v in got["kafka_consumergroup_group_lag_seconds"])
    assert got["lab_lag_read_success"] == [({}, 1.0)]
    # The Prometheus view and the JSON /metrics count the same live state. A scrape reads the
    # counts before the lag, so inventory events committed in between can make one scrape's
    # counts older than its lag; the two views must agree once nothing more arrives.
    def same_counts():
        g = scrape(http, stack.analytics_url)["lab_analytics_events_consumed_total"]
        js = http.get(stack.analytics_url + "/metrics", timeout=60).json()
        again = scrape(http, stack.analytics_url)["lab_analytics_events_consumed_total"]
        views = [(total(x, topic=ORDER_EVENTS), total(x, topic=INVENTORY_EVENTS)) for x in (g, again)]
        return views[0] == views[1] == (js["orders_total"], js["inventory_events_total"])

    wait_for(same_counts, 30, interval_s=1, what="/metrics/prometheus and /metrics to count the same")


def test_services_run_with_their_start_up_heap_frozen(stack, http):
    # The gunicorn hook (services/common/runtime.py) froze Flask's, kafka-python's and
    # jsonschema's objects; an app served without it would report 0.
    for url in (stack.producer_url, stack.analytics_url):
        got = scrape(http, url)
        assert total(got["python_gc_frozen_objects"]) > 50_000, url
        assert total(got["process_resident_memory_bytes"]) > 0
