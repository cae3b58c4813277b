"""The scale section's history stacks: ports that are free, distinct and kept where the broker needs them."""
from __future__ import annotations

import json
import socket

from lab.bench.scale import PORT_RANGE, PORTS_FILE, free_ports, history_stack, port_free
from lab.stack import Stack


class Scripted:
    """A random source that yields the given ports, then counts up from the range's start."""

    def __init__(self, *ports: int):
        self.ports, self.next = list(ports), PORT_RANGE[0]

    def randrange(self, lo, hi):
        if self.ports:
            return self.ports.pop(0)
        self.next += 1
        return self.next


def test_a_listening_port_a_taken_one_and_a_repeat_are_passed_over():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        busy = listener.getsockname()[1]
        assert not port_free(busy)
        first, taken = 20_123, 20_456
        ports = free_ports(3, taken={taken}, rng=Scripted(busy, taken, first, first))
    assert ports[0] == first and len(set(ports)) == 3
    assert busy not in ports and taken not in ports


def test_ports_come_from_below_the_ephemeral_range():
    ports = free_ports(20)
    assert len(set(ports)) == 20 and all(PORT_RANGE[0] <= p < PORT_RANGE[1] < 32_768 for p in ports)


def test_a_history_keeps_its_broker_ports_and_gets_new_http_ports(tmp_path):
    parent = Stack(home=tmp_path / "lab", kafka_port=9092, controller_port=9093, producer_port=7001,
                   analytics_port=7002, progress=lambda msg: None)
    first = history_stack(parent, tmp_path / "scale", 10_000, lambda msg: None)
    assert first.home == tmp_path / "scale" / "10000-events" and first.brokers == 1 and first.secure is False
    stored = json.loads((first.home / PORTS_FILE).read_text())
    assert stored == {"kafka_port": first.kafka_port, "controller_port": first.controller_port}
    again = history_stack(parent, tmp_path / "scale", 10_000, lambda msg: None,
                          taken={first.producer_port, first.analytics_port})
    assert (again.kafka_port, again.controller_port) == (first.kafka_port, first.controller_port)
    assert {again.producer_port, again.analytics_port}.isdisjoint(
        {first.producer_port, first.analytics_port, again.kafka_port, again.controller_port})


def test_a_history_whose_broker_port_another_process_holds_is_written_again(tmp_path):
    parent = Stack(home=tmp_path / "lab", progress=lambda msg: None)
    said = []
    first = history_stack(parent, tmp_path / "scale", 400, said.append)
    (first.home / "kafka-data").mkdir()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", first.kafka_port))
        squatter.listen()
        again = history_stack(parent, tmp_path / "scale", 400, said.append, taken={first.kafka_port})
    assert again.kafka_port != first.kafka_port and not (again.home / "kafka-data").exists()
    assert any("in use by another process" in line for line in said)
