"""A stack of its own: stop and start keep the data, down leaves nothing behind, a dead broker means 503."""
from __future__ import annotations

import socket

import psutil
import pytest

from services.common.config import Config
from services.producer.app import create_app as producer_app
from tests.conftest import free_port, make_stack
from tests.integration.kafka_reads import wait_for


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def test_stop_start_keeps_topics_offsets_and_metrics_and_down_leaves_nothing(tmp_path, http):
    stack = make_stack(tmp_path)
    try:
        stack.up()
        stack.up()  # idempotent: nothing new starts
        pids = {name: row["pids"] for name, row in stack.status().items()}
        r = http.post(stack.producer_url + "/orders/bulk", json={"n": 90, "item": "mixed", "seed": 3}, timeout=60)
        assert r.status_code == 201
        m1 = wait_for(lambda: (m := http.get(stack.analytics_url + "/metrics", timeout=30).json())
                      ["inventory_events_total"] == 90 and m, what="90 processed")
        stack.down()
        assert not any(row["running"] for row in stack.status().values())
        assert not [p for ps in pids.values() for p in ps if _alive(p)]
        assert all(_port_free(p) for p in (stack.kafka_port, stack.producer_port, stack.analytics_port))

        stack.up()
        m2 = wait_for(lambda: (m := http.get(stack.analytics_url + "/metrics", timeout=30).json())
                      ["consumer"]["phase"] == "live" and m, what="analytics live again")
        # Same counts: analytics rebuilt from the kept topics; inventory did not reprocess.
        for key in ("orders_total", "inventory_events_total", "stock_by_item", "orders_by_item"):
            assert m2[key] == m1[key], key
        committed = {(x["group"], x["partition"]): x["committed"] for x in m2["lag"] if x["topic"] == "OrderEvents"}
        assert sum(committed[("inventory-grp", p)] for p in range(3)) == 90
    finally:
        stack.down(wipe=True)
    assert not stack.broker.data_dir.exists()


def test_producer_answers_503_when_the_broker_is_unreachable():
    cfg = Config.from_env({"KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}", "KAFKA_TIMEOUT_MS": "1500"})
    client = producer_app(cfg).test_client()
    for path, body in (("/order", {"item": "pizza", "qty": 1}), ("/orders/bulk", {"n": 5, "item": "mixed"})):
        r = client.post(path, json=body)
        assert r.status_code == 503
        assert "Kafka" in r.json["error"]
    assert client.get("/healthz").status_code == 200


def test_broker_that_cannot_start_fails_fast_with_its_log_tail(tmp_path):
    from lab.broker import BrokerStartError, EmbeddedBroker

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        b = EmbeddedBroker(home=tmp_path, port=port, controller_port=free_port())
        try:
            with pytest.raises(BrokerStartError) as err:
                b.start(timeout=60, progress=lambda _: None)
        finally:
            b.stop()
    msg = str(err.value)
    assert "Last lines of" in msg and str(b.log_file) in msg
    assert "Address already in use" in msg or "BindException" in msg
