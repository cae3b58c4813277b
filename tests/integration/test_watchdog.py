"""group_lists against a real broker: a member is listed while in its group, not after it left."""
from __future__ import annotations

import dataclasses
import socket
import time
from types import SimpleNamespace

from services.common import kafka_clients
from services.common.topics import ORDER_EVENTS
from services.common.watchdog import group_lists


def _as_member(member_id: str):
    """Something with the consumer's group_metadata() shape, for another member id."""
    return SimpleNamespace(group_metadata=lambda: SimpleNamespace(member_id=member_id))


def test_group_lists_a_member_by_its_member_id_until_it_leaves(stack):
    cfg = stack.service_config()
    group = "test-watch-grp"
    consumer = kafka_clients.consumer(cfg, group_id=group, client_id="test-watch-a")
    try:
        consumer.subscribe([ORDER_EVENTS])
        deadline = time.monotonic() + 60
        while not consumer.assignment():
            assert time.monotonic() < deadline, "the consumer never joined its group"
            consumer.poll(timeout_ms=200)
        member_id = consumer.group_metadata().member_id
        assert group_lists(cfg, group, consumer)() is True
        # Another member id (a consumer the broker dropped keeps its old one): a definite no.
        assert group_lists(cfg, group, _as_member(member_id + "-gone"))() is False
    finally:
        consumer.close()  # leaves the group
    assert group_lists(cfg, group, _as_member(member_id))() is False


def test_group_lists_cannot_tell_without_a_broker(stack):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once the socket is closed
    cfg = dataclasses.replace(stack.service_config(), bootstrap=f"127.0.0.1:{port}", kafka_timeout_ms=300)
    assert group_lists(cfg, "test-watch-grp", _as_member("x"))() is None
