"""One frozen configuration per process, read from the environment once."""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass, fields


# Every environment variable the services read, with its default. The compose file,
# the README and tests/test_compose.py are checked against this table.
ENV_DEFAULTS: dict[str, str] = {
    "KAFKA_BOOTSTRAP": "127.0.0.1:9092",
    "PRODUCER_HOST": "127.0.0.1",
    "PRODUCER_PORT": "7001",
    "ANALYTICS_HOST": "127.0.0.1",
    "ANALYTICS_PORT": "7002",
    "THROTTLE_MS": "0",
    # inventory-consumer's transactional_id suffix; empty means the host name, which is
    # unique per container replica (compose --scale) and kept across a container's restarts.
    "INSTANCE_ID": "0",
    "INITIAL_STOCK": "2000",
    "COMMIT_INTERVAL_MS": "200",
    "ANALYTICS_REBUILD": "1",
    "LAB_API_TOKEN": "",
    "MAX_BULK_N": "200000",
    "MAX_BODY_BYTES": "4096",
    "KAFKA_TIMEOUT_MS": "5000",
    # How long a record may take from send to acknowledgement, retries included. It must
    # outlast a broker failure: KRaft fences a hard-killed broker after broker.session.timeout.ms
    # (9 s by default), then elects new leaders and the client refreshes its metadata (well under
    # a second each). 30 s is three times the detection; with one broker (nothing to fail over
    # to) it is also how long a record already on its way waits before its 503.
    "KAFKA_DELIVERY_TIMEOUT_MS": "30000",
    "LOG_LEVEL": "INFO",
    # Replicas of topics that ./run_all.sh up creates; 3 on a real multi-broker cluster.
    "TOPIC_REPLICATION_FACTOR": "1",
    # inventory-consumer's delivery guarantee (the names of Kafka Streams' processing.guarantee):
    # exactly_once (transactions) or at_least_once (commit after the outputs are acknowledged).
    "PROCESSING_GUARANTEE": "exactly_once",
}


class ConfigError(ValueError):
    """A setting that cannot work; the message is one line naming the variable."""


EXACTLY_ONCE = "exactly_once"
AT_LEAST_ONCE = "at_least_once"
PROCESSING_GUARANTEES = (EXACTLY_ONCE, AT_LEAST_ONCE)


def parse_guarantee(value: str) -> str:
    """PROCESSING_GUARANTEE checked: a typo must stop the consumer at start, not silently pick a mode."""
    mode = value.strip().lower()
    if mode not in PROCESSING_GUARANTEES:
        raise ConfigError(f"PROCESSING_GUARANTEE={value!r}: use one of {', '.join(PROCESSING_GUARANTEES)}")
    return mode


def _flag(value: str) -> bool:
    return value.strip().lower() not in ("", "0", "false", "no", "off")


@dataclass(frozen=True)
class Config:
    bootstrap: str
    producer_host: str
    producer_port: int
    analytics_host: str
    analytics_port: int
    throttle_ms: int
    instance_id: str
    initial_stock: int
    commit_interval_ms: int
    analytics_rebuild: bool
    api_token: str
    max_bulk_n: int
    max_body_bytes: int
    kafka_timeout_ms: int
    delivery_timeout_ms: int
    log_level: str
    topic_replication_factor: int
    processing_guarantee: str

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides) -> "Config":
        """Build the config from the environment (or a given mapping), then apply overrides."""
        env = os.environ if environ is None else environ
        raw = {k: env.get(k, d) for k, d in ENV_DEFAULTS.items()}
        cfg = cls(
            bootstrap=raw["KAFKA_BOOTSTRAP"],
            producer_host=raw["PRODUCER_HOST"],
            producer_port=int(raw["PRODUCER_PORT"]),
            analytics_host=raw["ANALYTICS_HOST"],
            analytics_port=int(raw["ANALYTICS_PORT"]),
            throttle_ms=int(raw["THROTTLE_MS"]),
            instance_id=raw["INSTANCE_ID"].strip() or socket.gethostname(),
            initial_stock=int(raw["INITIAL_STOCK"]),
            commit_interval_ms=int(raw["COMMIT_INTERVAL_MS"]),
            analytics_rebuild=_flag(raw["ANALYTICS_REBUILD"]),
            api_token=raw["LAB_API_TOKEN"],
            max_bulk_n=int(raw["MAX_BULK_N"]),
            max_body_bytes=int(raw["MAX_BODY_BYTES"]),
            kafka_timeout_ms=int(raw["KAFKA_TIMEOUT_MS"]),
            delivery_timeout_ms=int(raw["KAFKA_DELIVERY_TIMEOUT_MS"]),
            log_level=raw["LOG_LEVEL"],
            topic_replication_factor=int(raw["TOPIC_REPLICATION_FACTOR"]),
            processing_guarantee=parse_guarantee(raw["PROCESSING_GUARANTEE"]),
        )
        unknown = set(overrides) - {f.name for f in fields(cls)}
        if unknown:
            raise TypeError(f"unknown config fields: {sorted(unknown)}")
        return cls(**{**cfg.__dict__, **overrides}) if overrides else cfg
