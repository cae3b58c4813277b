"""The one definition of the lab's topics, and the idempotent step that creates them."""
from __future__ import annotations

import logging
from dataclasses import dataclass

from kafka.admin import ConfigResource, ConfigResourceType
from kafka.errors import TopicAlreadyExistsError

log = logging.getLogger(__name__)

RETENTION_MS = 7 * 24 * 60 * 60 * 1000  # 604800000: the spec's 7-day retention
PARTITIONS = 3

ORDER_EVENTS = "OrderEvents"
INVENTORY_EVENTS = "InventoryEvents"
ORDER_EVENTS_DLQ = "OrderEvents.DLQ"
INVENTORY_EVENTS_DLQ = "InventoryEvents.DLQ"
# inventory-consumer's state: each warehouse's latest stock, so a restart or rebalance reads
# one record instead of the warehouse's whole InventoryEvents history. Compacted: only the
# latest record per warehouse (key) has to be kept.
INVENTORY_STATE = "InventoryState"
# analytics-consumer's state: its folded metrics with the offsets of both input topics they
# cover, so a restart folds only what came after (services/analytics/snapshot.py). One
# partition, one key: the newest trusted record is the starting point; compaction keeps it.
ANALYTICS_STATE = "AnalyticsState"
# The consumer groups and id prefixes, beside the topics they read: ACLs, lag and the lab name them too.
INVENTORY_GROUP = "inventory-grp"
ANALYTICS_GROUP = "analytics-grp"
REPLAY_GROUP_PREFIX = "analytics-replay-"        # one disposable group per POST /replay, deleted after
TRANSACTIONAL_ID_PREFIX = "inventory-consumer-"  # + INSTANCE_ID: one transactional id per replica
# Small segments, because compaction never touches the active one.
STATE_SEGMENT_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int = PARTITIONS
    retention_ms: int = RETENTION_MS
    # 1 fits the embedded single broker; a real cluster passes 3 (see README).
    replication_factor: int = 1
    compacted: bool = False

    @property
    def configs(self) -> dict[str, str]:
        if self.compacted:
            return {"cleanup.policy": "compact", "segment.bytes": str(STATE_SEGMENT_BYTES)}
        return {"retention.ms": str(self.retention_ms)}


TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec(ORDER_EVENTS),
    TopicSpec(INVENTORY_EVENTS),
    TopicSpec(ORDER_EVENTS_DLQ),
    TopicSpec(INVENTORY_EVENTS_DLQ),
    TopicSpec(INVENTORY_STATE, compacted=True),
    TopicSpec(ANALYTICS_STATE, partitions=1, compacted=True),
)
DLQ_FOR = {ORDER_EVENTS: ORDER_EVENTS_DLQ, INVENTORY_EVENTS: INVENTORY_EVENTS_DLQ}


class TopicMismatchError(RuntimeError):
    """A topic exists with settings other than the lab's definition."""


def ensure_topics(admin, topics=TOPICS, replication_factor: int | None = None) -> list[str]:
    """Create missing topics; check existing ones match. Returns the names created."""
    existing = set(admin.list_topics())
    missing = [t for t in topics if t.name not in existing]
    created: list[str] = []
    if missing:
        specs = {
            t.name: {
                "num_partitions": t.partitions,
                "replication_factor": replication_factor or t.replication_factor,
                "configs": t.configs,
            }
            for t in missing
        }
        try:
            admin.create_topics(specs, wait_for_metadata=True)
            created = [t.name for t in missing]
        except TopicAlreadyExistsError:
            # Another starter won the race; the check below still applies.
            pass
    check_topics(admin, topics)
    if created:
        log.info("topics created: %s", ",".join(created))
    return created


def check_topics(admin, topics=TOPICS) -> None:
    """Raise TopicMismatchError naming every difference from the definition."""
    problems: list[str] = []
    described = {d["name"]: d for d in admin.describe_topics([t.name for t in topics])}
    resources = [ConfigResource(ConfigResourceType.TOPIC, t.name, configs=None) for t in topics]
    configs = admin.describe_configs(resources, config_filter="all")
    topic_configs = configs.get("topic", {})
    for t in topics:
        d = described.get(t.name)
        if d is None or d.get("error_code", 0):
            problems.append(f"{t.name}: missing")
            continue
        n = len(d["partitions"])
        if n != t.partitions:
            problems.append(f"{t.name}: {n} partitions, expected {t.partitions}")
        conf = topic_configs.get(t.name, {})
        # Only the settings the lab relies on: the retention of the event topics, the
        # compaction of the state topic (segment sizes are a tuning choice).
        for key, want in t.configs.items():
            if key == "segment.bytes":
                continue
            got = conf.get(key)
            value = got.get("value") if isinstance(got, dict) else got
            if value is not None and str(value) != want:
                problems.append(f"{t.name}: {key}={value}, expected {want}")
    if problems:
        raise TopicMismatchError(
            "topics differ from the lab's definition (delete them or use a fresh cluster): "
            + "; ".join(problems)
        )
