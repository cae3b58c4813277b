"""An existing cluster (KAFKA_BOOTSTRAP): compose's init-topics script against a real broker, then the
services started against that broker, which stays up after `down` because it is not the stack's."""
from __future__ import annotations

import subprocess

import pytest
import yaml
from kafka import KafkaAdminClient

from lab import paths
from lab.broker import EmbeddedBroker
from lab.compose import COMPOSE_FILE
from services.common.topics import TOPICS, check_topics
from services.inventory import health
from tests.conftest import free_port, make_stack
from tests.integration.kafka_reads import wait_for


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A broker started on its own, as an existing cluster would be: no topics yet."""
    broker = EmbeddedBroker(home=tmp_path_factory.mktemp("cluster"), port=free_port(), controller_port=free_port())
    try:
        broker.start(progress=lambda msg: print(msg, flush=True))
        yield broker
    finally:
        broker.stop()


def init_topics_script(bootstrap: str) -> str:
    """docker-compose.yml's init-topics command as the container's bash would see it, aimed at bootstrap.

    Compose turns $$ into $; kafka-topics.sh is the kafka-tools TopicCommand the broker's jars include.
    """
    script = yaml.safe_load(COMPOSE_FILE.read_text())["services"]["init-topics"]["command"][0]
    tool = f"java -cp '{paths.JARS_DIR}/*' org.apache.kafka.tools.TopicCommand --bootstrap-server {bootstrap}"
    return script.replace("$$", "$").replace("/opt/kafka/bin/kafka-topics.sh --bootstrap-server kafka:9092", tool)


def test_compose_init_topics_creates_the_defined_topics_and_is_rerunnable(cluster):
    script = init_topics_script(cluster.bootstrap)
    assert "org.apache.kafka.tools.TopicCommand" in script
    admin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap)
    try:
        assert not {t.name for t in TOPICS} & set(admin.list_topics())  # so the script is what creates them
    finally:
        admin.close()
    for attempt in ("create", "rerun"):
        res = subprocess.run(["bash", "-ec", script], capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, f"{attempt}: {res.stdout[-2000:]}{res.stderr[-2000:]}"
        admin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap)
        try:
            check_topics(admin, TOPICS)  # partitions and retention.ms as defined
            described = admin.describe_topics([t.name for t in TOPICS])
            assert {d["name"]: len(d["partitions"][0]["replica_nodes"]) for d in described} == \
                {t.name: t.replication_factor for t in TOPICS}
        finally:
            admin.close()


def test_services_run_against_an_existing_cluster_and_leave_it_running(cluster, tmp_path, http):
    stack = make_stack(tmp_path, INITIAL_STOCK=1000)
    stack.external_bootstrap = cluster.bootstrap
    try:
        stack.up()
        st = stack.status()
        assert (st["kafka"]["running"], st["kafka"]["external"], st["kafka"]["address"]) == \
            (None, True, cluster.bootstrap)
        r = http.post(stack.producer_url + "/orders/bulk", json={"n": 12, "item": "pizza"}, timeout=60)
        assert r.status_code == 201

        def counted():
            m = http.get(stack.analytics_url + "/metrics", timeout=30).json()
            return m if m["inventory_events_total"] >= 12 else None
        m = wait_for(counted, 90, interval_s=0.5, what="analytics to count the orders on the existing cluster")
        assert m["orders_total"] == m["inventory_events_total"] == 12

        # inventory-consumer's container healthcheck, run with instance 0's environment and another's.
        env = {"KAFKA_BOOTSTRAP": cluster.bootstrap}
        assert health.main({**env, "INSTANCE_ID": "0"}) == 0
        assert health.main({**env, "INSTANCE_ID": "no-such-replica"}) == 1
    finally:
        stack.down()
    assert cluster.running_pid() is not None, "down stopped a broker that was not the stack's"


def test_an_unreachable_bootstrap_is_one_line_naming_the_address(tmp_path):
    import os
    import sys
    address = f"127.0.0.1:{free_port()}"   # nothing listens there
    env = {**os.environ, "KAFKA_BOOTSTRAP": address, "KAFKA_TIMEOUT_MS": "1500", "LAB_HOME": str(tmp_path),
           "PRODUCER_PORT": str(free_port()), "ANALYTICS_PORT": str(free_port()), "PYTHONPATH": str(paths.ROOT)}
    res = subprocess.run([sys.executable, "-m", "lab.cli", "up"], cwd=paths.ROOT, env=env, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 1
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in res.stderr, res.stderr
    assert err[0].startswith(f"error: cannot reach Kafka at {address}") and "KAFKA_BOOTSTRAP" in err[0]
