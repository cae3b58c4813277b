"""Which broker holds what in a cluster: partition leaders, group and transaction coordinators.

The failover tests kill exactly the broker that matters; `./run_all.sh status` shows the rest.
"""
from __future__ import annotations

from services.common import kafka_clients

OFFSETS_TOPIC = "__consumer_offsets"


def group_partition(group: str, partitions: int) -> int:
    """The __consumer_offsets partition of a group, as Kafka picks it: Utils.abs(group.hashCode()) % partitions."""
    h = 0
    for ch in group:
        h = (31 * h + ord(ch)) & 0xFFFFFFFF
    signed = h - (1 << 32) if h & 0x80000000 else h
    # Kafka's Utils.abs: Math.abs, except that Integer.MIN_VALUE gives 0 rather than itself.
    return (0 if signed == -(1 << 31) else abs(signed)) % partitions


def leaders(cfg) -> dict[str, dict[int, int]]:
    """{topic: {partition: leader node id}} for every topic, internal ones included."""
    admin = kafka_clients.admin(cfg, client_id="lab-coordinators")
    try:
        return {t["name"]: {p["partition_index"]: p["leader_id"] for p in t["partitions"]}
                for t in admin.describe_topics()}
    finally:
        admin.close()


def group_coordinator(cfg, group: str) -> int:
    """The node that coordinates group: the leader of its __consumer_offsets partition."""
    offsets = leaders(cfg)[OFFSETS_TOPIC]
    return offsets[group_partition(group, len(offsets))]


def transaction_coordinator(cfg, transactional_id: str) -> int:
    """The node that coordinates a transactional id, as the broker describes it."""
    admin = kafka_clients.admin(cfg, client_id="lab-coordinators")
    try:
        return admin.describe_transactions([transactional_id])[transactional_id].coordinator_id
    finally:
        admin.close()
