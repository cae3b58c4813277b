"""Kafka client factories: every producer, consumer and admin client is built here, from Config."""
from __future__ import annotations

import time

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

from services.common.config import Config


def producer(cfg: Config, *, transactional_id: str | None = None, client_id: str = "lab") -> KafkaProducer:
    """An idempotent acks=all producer; transactional when transactional_id is given."""
    opts = dict(
        bootstrap_servers=cfg.bootstrap,
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,                   # small batches without hurting single-order latency
        batch_size=64 * 1024,
        # A down broker must surface as an error within bounded time, not a hang.
        max_block_ms=cfg.kafka_timeout_ms,
        request_timeout_ms=cfg.kafka_timeout_ms,
        delivery_timeout_ms=cfg.kafka_timeout_ms * 2 + 5,
        reconnect_backoff_max_ms=1000,
        # kafka-python's client-side metrics cost ~10% of producer-order's CPU at POST /order
        # (Sensor.record per produce request); nothing reads them.
        metrics_enabled=False,
    )
    if transactional_id:
        opts["transactional_id"] = transactional_id
    return KafkaProducer(**opts)


def consumer(cfg: Config, *, group_id: str | None, client_id: str = "lab", **extra) -> KafkaConsumer:
    """A read_committed consumer that never auto-commits: callers commit what they processed."""
    opts = dict(
        bootstrap_servers=cfg.bootstrap,
        client_id=client_id,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        # A member killed with -9 holds its partitions until its session expires; 10 s
        # (instead of 45 s) lets the restarted or surviving instances take over quickly.
        session_timeout_ms=10000,
        heartbeat_interval_ms=3000,
        request_timeout_ms=max(cfg.kafka_timeout_ms, 30000) + 5000,
        reconnect_backoff_max_ms=1000,
    )
    opts.update(extra)
    return KafkaConsumer(**opts)


def admin(cfg: Config, *, client_id: str = "lab-admin") -> KafkaAdminClient:
    return KafkaAdminClient(bootstrap_servers=cfg.bootstrap, client_id=client_id,
                            request_timeout_ms=cfg.kafka_timeout_ms * 2)


def end_offsets(consumer, tps, attempts: int = 10, timeout_ms: int | None = 30000) -> dict:
    """consumer.end_offsets (the last stable offset for read_committed), retried.

    kafka-python 3.0.12 raises KeyError when a partition's leader is not yet in its
    metadata (just after start or a broker restart); a metadata refresh cures it.
    """
    for attempt in range(attempts):
        try:
            return consumer.end_offsets(list(tps), timeout_ms=timeout_ms)
        except KeyError:
            if attempt == attempts - 1:
                raise
            consumer._client.cluster.request_update()
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")
