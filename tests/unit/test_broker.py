"""The embedded broker's set-up, without starting it: version, properties, prerequisites."""
import pytest

from lab import broker
from lab.broker import EmbeddedBroker, PrerequisiteError


def test_kafka_version_is_pinned_in_the_pom():
    v = broker.kafka_version()
    assert v.split(".")[0] == "4" and len(v.split(".")) == 3


def test_server_properties_single_node_kraft(tmp_path):
    props = dict(line.split("=", 1) for line in
                 EmbeddedBroker(home=tmp_path, port=19092, controller_port=19093).server_properties().splitlines()
                 if "=" in line and not line.startswith("#"))
    assert props["process.roles"] == "broker,controller" and props["node.id"] == "1"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["controller.quorum.bootstrap.servers"] == "127.0.0.1:19093"
    for key in ("offsets.topic.replication.factor", "transaction.state.log.replication.factor",
                "transaction.state.log.min.isr"):
        assert props[key] == "1"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props["log.dirs"] == str(tmp_path / "kafka-data")
    assert "zookeeper.connect" not in props


@pytest.mark.parametrize("tool, hint", [("mvn", "Maven"), ("java", "Java")])
def test_missing_prerequisite_is_one_line_naming_the_install(monkeypatch, tmp_path, tool, hint):
    real_which = broker.shutil.which
    monkeypatch.setattr(broker.shutil, "which", lambda name: None if name == tool else real_which(name))
    with pytest.raises(PrerequisiteError) as err:
        broker.ensure_jars(jars_dir=tmp_path / "jars", progress=lambda _: None)
    msg = str(err.value)
    assert "\n" not in msg and tool in msg and hint in msg
