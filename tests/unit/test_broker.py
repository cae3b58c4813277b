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


def props_of(node) -> dict:
    return dict(line.split("=", 1) for line in node.server_properties().splitlines()
                if "=" in line and not line.startswith("#"))


def test_a_three_node_cluster_has_static_voters_three_replicas_and_an_isr_of_two(tmp_path):
    ports = tuple(broker.node_ports(19092, 19093, i) for i in (1, 2, 3))
    assert ports == ((19092, 19093), (19102, 19103), (19112, 19113))
    cluster = broker.EmbeddedCluster(home=tmp_path, ports=ports)
    assert cluster.bootstrap == "127.0.0.1:19092,127.0.0.1:19102,127.0.0.1:19112"
    nodes = [props_of(n) for n in cluster.nodes]
    assert [p["node.id"] for p in nodes] == ["1", "2", "3"]
    assert {p["controller.quorum.voters"] for p in nodes} == {"1@127.0.0.1:19093,2@127.0.0.1:19103,3@127.0.0.1:19113"}
    assert all("controller.quorum.bootstrap.servers" not in p for p in nodes)
    for p in nodes:
        assert p["offsets.topic.replication.factor"] == p["transaction.state.log.replication.factor"] == "3"
        assert p["default.replication.factor"] == "3"
        assert p["min.insync.replicas"] == p["transaction.state.log.min.isr"] == "2"
    # Each node its own data, logs and pid file; node 1 keeps the single broker's.
    assert [n.data_dir.name for n in cluster.nodes] == ["kafka-data", "kafka-data-2", "kafka-data-3"]
    assert [n.pid_file.name for n in cluster.nodes] == ["kafka.pid", "kafka-2.pid", "kafka-3.pid"]
    assert len({n.properties_file for n in cluster.nodes}) == 3


def test_one_node_is_the_single_broker_it_always_was(tmp_path):
    (single,) = broker.EmbeddedCluster(home=tmp_path, ports=((19092, 19093),)).nodes
    assert props_of(single) == props_of(EmbeddedBroker(home=tmp_path, port=19092, controller_port=19093))
    assert props_of(single)["min.insync.replicas"] == "1"


def test_a_cluster_is_not_started_over_a_single_brokers_data(tmp_path):
    from lab.stack import Stack, StackError
    (tmp_path / "kafka-data").mkdir()
    (tmp_path / "kafka-data" / "meta.properties").write_text("cluster.id=x\n")
    with pytest.raises(StackError, match="holds the data of a 1-broker stack, not 3: ./run_all.sh down --wipe first"):
        Stack(home=tmp_path, brokers=3)._check_size(3)
    Stack(home=tmp_path, brokers=1)._check_size(1)   # the same size is fine
