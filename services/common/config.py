"""One frozen configuration per process, read from the environment once."""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field, fields

# Every environment variable the services read, with its default. The compose file and
# the README are checked against this table (tests/unit/test_compose.py, test_readme.py).
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
    # Seconds between analytics-consumer's snapshots of its metrics to AnalyticsState (and one at
    # a clean stop); a restart folds only what came after the newest one. 0: no snapshots, every
    # start folds the whole history.
    "ANALYTICS_SNAPSHOT_EVERY_S": "30",
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
    # How the clients connect: the names the Kafka clients use (security.protocol, sasl.mechanism,
    # ...). A managed cluster wants SASL_SSL with SCRAM or PLAIN; ./run_all.sh up --secure sets
    # them per service. An empty CA file means the system's trust store.
    "KAFKA_SECURITY_PROTOCOL": "PLAINTEXT",
    "KAFKA_SASL_MECHANISM": "",
    "KAFKA_SASL_USERNAME": "",
    "KAFKA_SASL_PASSWORD": "",
    "KAFKA_SSL_CAFILE": "",
    # mTLS: the client's certificate and its private key (PEM), when the cluster asks for one.
    "KAFKA_SSL_CERTFILE": "",
    "KAFKA_SSL_KEYFILE": "",
}

# Variables whose values never show: not in status, progress lines, logs or reports.
SECRET_VARS = frozenset({"KAFKA_SASL_PASSWORD", "LAB_API_TOKEN"})


def masked(env: dict) -> dict:
    """env with every secret's value replaced by ***, for anything a person or a log may see."""
    return {k: ("***" if k in SECRET_VARS and v else v) for k, v in env.items()}


SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


class ConfigError(ValueError):
    """A setting that cannot work; the message is one line naming the variable."""


@dataclass(frozen=True, repr=False, eq=False)
class Secret:
    """A password that never shows: repr and str mask it, so logs, tracebacks and status cannot leak it."""
    _value: str = field(default="")

    def reveal(self) -> str:
        """The password itself, for the one place that sends it to the broker."""
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('***')" if self._value else "Secret('')"

    __str__ = __repr__

    def __eq__(self, other) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class ConnectionConfig:
    """How every client of this process authenticates to and encrypts its way to the cluster."""
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = ""
    sasl_username: str = ""
    sasl_password: Secret = Secret()
    ssl_cafile: str = ""
    ssl_certfile: str = ""
    ssl_keyfile: str = ""

    @classmethod
    def from_env(cls, raw: dict[str, str]) -> "ConnectionConfig":
        conn = cls(
            security_protocol=raw["KAFKA_SECURITY_PROTOCOL"].strip().upper() or "PLAINTEXT",
            sasl_mechanism=raw["KAFKA_SASL_MECHANISM"].strip().upper(),
            sasl_username=raw["KAFKA_SASL_USERNAME"],
            sasl_password=Secret(raw["KAFKA_SASL_PASSWORD"]),
            ssl_cafile=raw["KAFKA_SSL_CAFILE"],
            ssl_certfile=raw["KAFKA_SSL_CERTFILE"],
            ssl_keyfile=raw["KAFKA_SSL_KEYFILE"],
        )
        conn.validate()
        return conn

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    def validate(self) -> None:
        """Refuse, in one line, a combination no broker would accept (before any connection is tried)."""
        if self.security_protocol not in SECURITY_PROTOCOLS:
            raise ConfigError(f"KAFKA_SECURITY_PROTOCOL={self.security_protocol!r}: "
                              f"use one of {', '.join(SECURITY_PROTOCOLS)}")
        if self.uses_sasl:
            mechanism = self.sasl_mechanism or "PLAIN"
            if mechanism not in SASL_MECHANISMS:
                raise ConfigError(f"KAFKA_SASL_MECHANISM={mechanism!r}: use one of {', '.join(SASL_MECHANISMS)}")
            if not self.sasl_username or not self.sasl_password:
                raise ConfigError(f"KAFKA_SECURITY_PROTOCOL={self.security_protocol} needs KAFKA_SASL_USERNAME "
                                  "and KAFKA_SASL_PASSWORD")
        for var, path in (("KAFKA_SSL_CAFILE", self.ssl_cafile), ("KAFKA_SSL_CERTFILE", self.ssl_certfile),
                          ("KAFKA_SSL_KEYFILE", self.ssl_keyfile)):
            if path and not os.path.isfile(path):
                raise ConfigError(f"{var}={path}: no such file")
        if bool(self.ssl_certfile) != bool(self.ssl_keyfile):
            raise ConfigError("mTLS needs both KAFKA_SSL_CERTFILE and KAFKA_SSL_KEYFILE")

    def client_options(self) -> dict:
        """kafka-python's keyword arguments for these settings (nothing extra for PLAINTEXT)."""
        opts: dict = {}
        if self.security_protocol != "PLAINTEXT":
            opts["security_protocol"] = self.security_protocol
        if self.uses_sasl:
            opts.update(sasl_mechanism=self.sasl_mechanism or "PLAIN", sasl_plain_username=self.sasl_username,
                        sasl_plain_password=self.sasl_password.reveal())
        if self.uses_tls:
            if self.ssl_cafile:
                opts["ssl_cafile"] = self.ssl_cafile
            if self.ssl_certfile:
                opts.update(ssl_certfile=self.ssl_certfile, ssl_keyfile=self.ssl_keyfile)
        return opts

    def describe(self) -> str:
        """What status and the report may show: the protocol, mechanism and user, never the password."""
        if not self.uses_sasl:
            return self.security_protocol
        return f"{self.security_protocol} {self.sasl_mechanism or 'PLAIN'} as {self.sasl_username}"


EXACTLY_ONCE = "exactly_once"
AT_LEAST_ONCE = "at_least_once"
PROCESSING_GUARANTEES = (EXACTLY_ONCE, AT_LEAST_ONCE)


def parse_guarantee(value: str) -> str:
    """PROCESSING_GUARANTEE checked: a typo must stop the consumer at start, not silently pick a mode."""
    mode = value.strip().lower()
    if mode not in PROCESSING_GUARANTEES:
        raise ConfigError(f"PROCESSING_GUARANTEE={value!r}: use one of {', '.join(PROCESSING_GUARANTEES)}")
    return mode


def _seconds(name: str, value: str) -> float:
    """A non-negative number of seconds, or a one-line ConfigError naming the variable."""
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0 or seconds == float("inf"):
        raise ConfigError(f"{name}={value!r}: a number of seconds, 0 or more")
    return seconds


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
    analytics_snapshot_every_s: float
    api_token: Secret
    max_bulk_n: int
    max_body_bytes: int
    kafka_timeout_ms: int
    delivery_timeout_ms: int
    log_level: str
    topic_replication_factor: int
    processing_guarantee: str
    connection: ConnectionConfig = ConnectionConfig()

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
            analytics_snapshot_every_s=_seconds("ANALYTICS_SNAPSHOT_EVERY_S", raw["ANALYTICS_SNAPSHOT_EVERY_S"]),
            api_token=Secret(raw["LAB_API_TOKEN"]),
            max_bulk_n=int(raw["MAX_BULK_N"]),
            max_body_bytes=int(raw["MAX_BODY_BYTES"]),
            kafka_timeout_ms=int(raw["KAFKA_TIMEOUT_MS"]),
            delivery_timeout_ms=int(raw["KAFKA_DELIVERY_TIMEOUT_MS"]),
            log_level=raw["LOG_LEVEL"],
            topic_replication_factor=int(raw["TOPIC_REPLICATION_FACTOR"]),
            processing_guarantee=parse_guarantee(raw["PROCESSING_GUARANTEE"]),
            connection=ConnectionConfig.from_env(raw),
        )
        unknown = set(overrides) - {f.name for f in fields(cls)}
        if unknown:
            raise TypeError(f"unknown config fields: {sorted(unknown)}")
        return cls(**{**cfg.__dict__, **overrides}) if overrides else cfg

    def authorization(self) -> dict[str, str]:
        """The header a client of the lab's HTTP API sends: the bearer token when LAB_API_TOKEN is set."""
        return {"Authorization": f"Bearer {self.api_token.reveal()}"} if self.api_token else {}
