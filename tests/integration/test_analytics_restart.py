"""A restarted analytics-consumer leaves its group, so its successor is not blocked for a session timeout."""
from __future__ import annotations

from kafka import KafkaAdminClient
from kafka.errors import CoordinatorNotAvailableError

from lab.stack import ANALYTICS
from services.common.topics import ANALYTICS_GROUP as GROUP
from tests.integration.kafka_reads import wait_for


def members(bootstrap: str) -> set[str]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="test-members")
    try:
        return {m["member_id"] for m in admin.describe_groups([GROUP])[GROUP]["members"]}
    finally:
        admin.close()


def members_once_ready(bootstrap: str) -> set[str]:
    try:
        return members(bootstrap)
    except CoordinatorNotAvailableError:  # a fresh broker loads its group coordinator lazily
        return set()


def test_stopped_analytics_worker_leaves_the_group(stack):
    old = wait_for(lambda: members_once_ready(stack.bootstrap), what=f"a member in {GROUP}")
    stack.restart(ANALYTICS)
    # Without a LeaveGroup the old member stays listed until its 45 s session expires,
    # and the new one gets no partitions until then.
    assert not old & members(stack.bootstrap)
    new = wait_for(lambda: members(stack.bootstrap), what=f"the new member in {GROUP}")
    assert len(new) == 1 and not old & new
