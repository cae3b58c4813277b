"""kafka/image/run, the offline Kafka image's entry point: KAFKA_* variables become server properties
as apache/kafka's documentation says, so docker-compose.yml runs either image.

The broker it starts is tests/integration/test_kafka_image.py's; this file needs only bash.
"""
from __future__ import annotations

import subprocess

import pytest
import yaml

from lab import paths
from lab.compose import COMPOSE_FILE

RUN = paths.ROOT / "kafka" / "image" / "run"


def print_config(env: dict) -> tuple[int, dict, str]:
    res = subprocess.run(["bash", str(RUN), "--print-config"], env={"PATH": "/usr/bin:/bin", **env},
                         capture_output=True, text=True)
    props = dict(line.split("=", 1) for line in res.stdout.splitlines() if line and not line.startswith("#"))
    return res.returncode, props, res.stderr


@pytest.mark.parametrize("variable,prop", [
    ("KAFKA_LOG_DIRS", "log.dirs"),                                    # "." is "_"
    ("KAFKA_ABC__DEF", "abc_def"),                                     # "_" is "__"
    ("KAFKA_ABC___DEF", "abc-def"),                                    # "-" is "___"
    ("KAFKA_LISTENER_NAME_EXTERNAL_SCRAM___SHA___512_SASL__JAAS__CONFIG",
     "listener.name.external.scram-sha-512.sasl_jaas_config"),
    ("KAFKA_NODE_ID", "node.id"),
])
def test_variables_become_properties_as_apache_kafka_documents(variable, prop):
    rc, props, _ = print_config({variable: "v=1,x"})
    assert rc == 0 and props == {prop: "v=1,x"}


def test_jvm_and_script_variables_and_others_are_not_properties():
    rc, props, _ = print_config({"KAFKA_NODE_ID": "1", "KAFKA_HEAP_OPTS": "-Xmx512m", "KAFKA_OPTS": "-Dx=1",
                                 "KAFKA_JVM_PERFORMANCE_OPTS": "-server", "CLUSTER_ID": "abc", "OTHER": "1"})
    assert rc == 0 and props == {"node.id": "1"}


def test_no_settings_is_a_one_line_error():
    rc, props, err = print_config({})
    assert rc == 1 and props == {} and err.count("\n") == 1 and "no KAFKA_* settings" in err


def test_the_compose_brokers_environment_gives_the_single_node_kraft_config():
    env = {k: str(v) for k, v in yaml.safe_load(COMPOSE_FILE.read_text())["services"]["kafka"]["environment"].items()}
    env = {k: v for k, v in env.items() if not v.startswith("${")}
    rc, props, _ = print_config(env)
    assert rc == 0
    assert props["process.roles"] == "broker,controller"
    assert props["controller.quorum.voters"] == "1@kafka:9093"
    assert props["listeners"] == "PLAINTEXT://:9092,CONTROLLER://:9093,EXTERNAL://:9094"
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["log.dirs"] == "/var/lib/kafka/data"
    assert "heap.opts" not in props and "cluster.id" not in props
