"""group_lists against a real broker: a member is listed while in its group, not after it left."""
from __future__ import annotations

import time

from services.common import kafka_clients
from services.common.topics import ORDER_EVENTS
from services.common.watchdog import group_lists


def test_group_lists_a_member_by_its_client_id_until_it_leaves(stack):
    cfg = stack.service_config()
    group = "test-watch-grp"
    consumer = kafka_clients.consumer(cfg, group_id=group, client_id="test-watch-a")
    try:
        consumer.subscribe([ORDER_EVENTS])
        deadline = time.monotonic() + 60
        while not consumer.assignment():
            assert time.monotonic() < deadline, "the consumer never joined its group"
            consumer.poll(timeout_ms=200)
        assert group_lists(cfg, group, "test-watch-a")()
        assert not group_lists(cfg, group, "test-watch-b")()  # another instance's id
    finally:
        consumer.close()  # leaves the group
    assert not group_lists(cfg, group, "test-watch-a")()
