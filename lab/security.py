"""`./run_all.sh up --secure`: the embedded broker secured like a managed cluster.

- A SASL_SSL listener for clients: TLS with a CA and a broker certificate made here on first
  start, SCRAM-SHA-512 passwords created in the storage at format time (KRaft has no ZooKeeper
  to add them to later, and a broker must know them before it can accept anyone).
- The KRaft controller listener speaks mutual TLS: brokers and controllers prove themselves
  with the broker certificate (principal User:CN=kafka-broker). SCRAM cannot serve there: a
  controller reads SCRAM credentials from the very metadata it has to serve first.
- StandardAuthorizer with nothing allowed by default; each service gets its own principal and
  only the ACLs it needs (service_acls). The lab's tooling is the admin principal.
- Per principal, a Kafka client properties file (mode 0600) for Kafka's own CLI tools
  (`--command-config`) and the environment the service is started with.

Everything lives under $LAB_HOME/secure, created once and kept: the passwords must match
what was formatted into the storage.
"""
from __future__ import annotations

import datetime
import ipaddress
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from services.common.topics import (
    ANALYTICS_GROUP,
    ANALYTICS_STATE,
    INVENTORY_EVENTS,
    INVENTORY_EVENTS_DLQ,
    INVENTORY_GROUP,
    INVENTORY_STATE,
    ORDER_EVENTS,
    ORDER_EVENTS_DLQ,
    REPLAY_GROUP_PREFIX,
    TRANSACTIONAL_ID_PREFIX,
)
from services.common.transactions import OFFSETS_TOPIC

MECHANISM = "SCRAM-SHA-512"
ADMIN = "lab-admin"
PRODUCER = "producer-order"
INVENTORY = "inventory-consumer"
ANALYTICS = "analytics-consumer"
PRINCIPALS = (ADMIN, PRODUCER, INVENTORY, ANALYTICS)
BROKER_DN = "CN=kafka-broker"   # the brokers' and controllers' own principal: User:CN=kafka-broker
AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"

# Who may do what: (principal, resource type, name, pattern, operations). READ and WRITE imply
# DESCRIBE in Kafka's authorizer, and WRITE on a topic implies IDEMPOTENT_WRITE (Kafka 3.0+).
# Group names and prefixes come from the services' own code.
TOPIC, GROUP, TRANSACTIONAL_ID = "TOPIC", "GROUP", "TRANSACTIONAL_ID"
LITERAL, PREFIXED = "LITERAL", "PREFIXED"


@dataclass(frozen=True)
class Grant:
    principal: str
    resource: str
    name: str
    pattern: str
    operation: str


def service_acls() -> tuple[Grant, ...]:
    """Each service's ACLs: only what its code does, so a bug or a stolen password reaches no further."""

    def grants(principal, resource, name, *ops, pattern=LITERAL):
        return [Grant(principal, resource, name, pattern, op) for op in ops]

    return tuple(
        # producer-order: writes orders, nothing else.
        grants(PRODUCER, TOPIC, ORDER_EVENTS, "WRITE")
        # inventory-consumer: orders in; inventory events, its state snapshots and the order DLQ
        # out, in transactions under its own ids; it rebuilds its state by reading its own topics.
        # At start it repairs what Kafka 4.3.1 can leave behind, a transaction of its own whose
        # markers were lost (services/common/transactions.py): DescribeProducers needs READ and
        # the abort (WriteTxnMarkers) ALTER on every partition the transaction wrote, the group
        # offsets topic included. That is the one grant beyond its own data; without it the repair
        # would fail at every start.
        + grants(INVENTORY, TOPIC, ORDER_EVENTS, "READ")
        + grants(INVENTORY, TOPIC, INVENTORY_EVENTS, "READ", "WRITE", "ALTER")
        + grants(INVENTORY, TOPIC, INVENTORY_STATE, "READ", "WRITE", "ALTER")
        + grants(INVENTORY, TOPIC, ORDER_EVENTS_DLQ, "READ", "WRITE", "ALTER")
        + grants(INVENTORY, TOPIC, OFFSETS_TOPIC, "READ", "ALTER")
        + grants(INVENTORY, GROUP, INVENTORY_GROUP, "READ")
        + grants(INVENTORY, TRANSACTIONAL_ID, TRANSACTIONAL_ID_PREFIX, "WRITE", pattern=PREFIXED)
        # analytics-consumer: reads both topics, writes the inventory DLQ, its live group and
        # its replay groups (which it deletes afterwards); describes inventory-grp for /metrics' lag.
        # It writes its snapshots to AnalyticsState and reads them back at start.
        + grants(ANALYTICS, TOPIC, ORDER_EVENTS, "READ")
        + grants(ANALYTICS, TOPIC, INVENTORY_EVENTS, "READ")
        + grants(ANALYTICS, TOPIC, ANALYTICS_STATE, "READ", "WRITE", "DESCRIBE")
        + grants(ANALYTICS, TOPIC, INVENTORY_EVENTS_DLQ, "WRITE")
        + grants(ANALYTICS, GROUP, ANALYTICS_GROUP, "READ")
        + grants(ANALYTICS, GROUP, REPLAY_GROUP_PREFIX, "READ", "DELETE", pattern=PREFIXED)
        + grants(ANALYTICS, GROUP, INVENTORY_GROUP, "DESCRIBE")
    )


class SecureHome:
    """The secrets of one secure stack: CA, broker certificate, passwords, client properties."""

    def __init__(self, home: Path):
        self.dir = Path(home) / "secure"

    # -- files -----------------------------------------------------------------------------
    @property
    def ca_file(self) -> Path:
        return self.dir / "ca.pem"

    @property
    def broker_pem(self) -> Path:
        """The broker's private key and certificate chain in one PEM file (Kafka's PEM keystore)."""
        return self.dir / "broker.pem"

    @property
    def _passwords_file(self) -> Path:
        return self.dir / "passwords.json"

    def properties_file(self, principal: str) -> Path:
        return self.dir / f"{principal}.properties"

    def exists(self) -> bool:
        return self._passwords_file.exists() and self.broker_pem.exists()

    # -- creation --------------------------------------------------------------------------
    def ensure(self) -> None:
        """Create the CA, the broker certificate and the passwords once; later starts reuse them."""
        if self.exists():
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        ca_pem, broker_pem = make_certificates()
        self.ca_file.write_bytes(ca_pem)
        write_private(self.broker_pem, broker_pem)
        write_private(self._passwords_file, json.dumps({p: secrets.token_urlsafe(24) for p in PRINCIPALS}).encode())
        for principal in PRINCIPALS:
            write_private(self.properties_file(principal), self.client_properties(principal).encode())

    def password(self, principal: str) -> str:
        return json.loads(self._passwords_file.read_text())[principal]

    def client_properties(self, principal: str) -> str:
        """Kafka's own client settings for principal, for `kafka-topics.sh --command-config FILE` and the like."""
        return "\n".join([
            "# Generated by lab/security.py for ./run_all.sh up --secure. Keep private (mode 0600).",
            "security.protocol=SASL_SSL",
            f"sasl.mechanism={MECHANISM}",
            "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="{principal}" password="{self.password(principal)}";',
            "ssl.truststore.type=PEM",
            f"ssl.truststore.location={self.ca_file}",
            "",
        ])

    def client_env(self, principal: str) -> dict[str, str]:
        """The environment a process connecting as principal is started with (services/common/config.py reads it)."""
        return {
            "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "KAFKA_SASL_MECHANISM": MECHANISM,
            "KAFKA_SASL_USERNAME": principal,
            "KAFKA_SASL_PASSWORD": self.password(principal),
            "KAFKA_SSL_CAFILE": str(self.ca_file),
        }

    def connection(self, principal: str):
        """principal's ConnectionConfig, as the services would read it from client_env."""
        from services.common.config import ENV_DEFAULTS, ConnectionConfig
        return ConnectionConfig.from_env({**ENV_DEFAULTS, **self.client_env(principal)})

    def scram_format_args(self) -> list[str]:
        """kafka-storage format's --add-scram arguments: every principal's SCRAM credential."""
        args: list[str] = []
        for principal in PRINCIPALS:
            args += ["--add-scram", f"{MECHANISM}=[name={principal},password={self.password(principal)}]"]
        return args

    def broker_properties(self, port: int, controller_port: int) -> list[str]:
        """server.properties lines of a secured node: SASL_SSL for clients and brokers, mTLS for the controllers."""
        return [
            f"listeners=SASL_SSL://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
            f"advertised.listeners=SASL_SSL://127.0.0.1:{port}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=SASL_SSL",
            "listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:SSL",
            f"sasl.enabled.mechanisms={MECHANISM}",
            f"sasl.mechanism.inter.broker.protocol={MECHANISM}",
            # The broker's own replication traffic logs in as the admin principal.
            f"listener.name.sasl_ssl.{MECHANISM.lower()}.sasl.jaas.config="
            "org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="{ADMIN}" password="{self.password(ADMIN)}";',
            "ssl.keystore.type=PEM",
            f"ssl.keystore.location={self.broker_pem}",
            "ssl.truststore.type=PEM",
            f"ssl.truststore.location={self.ca_file}",
            # Only a holder of a certificate from this CA may talk to the controllers.
            "listener.name.controller.ssl.client.auth=required",
            f"authorizer.class.name={AUTHORIZER}",
            f"super.users=User:{ADMIN};User:{BROKER_DN}",
            "allow.everyone.if.no.acl.found=false",
        ]


def describe() -> str:
    """The secured stack's shape, for status and the report (no secret in it)."""
    return f"SASL_SSL, {MECHANISM}, mTLS between controllers, ACLs per service"


def write_private(path: Path, data: bytes | str) -> None:
    """Write a file only its owner can read: from the first byte on, and an existing file's mode too."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)   # O_CREAT's mode applies only to a new file
    with os.fdopen(fd, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)


def make_certificates(days: int = 3650, hosts: tuple[str, ...] = ("localhost", "127.0.0.1")) -> tuple[bytes, bytes]:
    """A self-signed CA (PEM) and a broker key plus certificate chain (PEM) for hosts (names or IPs)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    valid = dict(not_valid_before=now - datetime.timedelta(minutes=5),
                 not_valid_after=now + datetime.timedelta(days=days))

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kafka-lab CA")])
    ca_cert = (x509.CertificateBuilder(subject_name=ca_name, issuer_name=ca_name, public_key=ca_key.public_key(),
                                       serial_number=x509.random_serial_number(), **valid)
               .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                            content_commitment=False, key_encipherment=False, data_encipherment=False,
                                            key_agreement=False, encipher_only=False, decipher_only=False),
                              critical=True)
               .sign(ca_key, hashes.SHA256()))

    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder(subject_name=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kafka-broker")]),
                                    issuer_name=ca_name, public_key=key.public_key(),
                                    serial_number=x509.random_serial_number(), **valid)
            # Clients check the host name they dialled against these (kafka-python and the Java client both do).
            .add_extension(x509.SubjectAlternativeName([_san(h) for h in hosts]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            # Server for the clients, client towards the other controllers (mutual TLS).
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH,
                                                  x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))

    pem = serialization.Encoding.PEM
    ca_pem = ca_cert.public_bytes(pem)
    # Kafka's PEM keystore wants an unencrypted PKCS#8 key followed by the chain.
    key_pem = key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return ca_pem, key_pem + cert.public_bytes(pem) + ca_pem


def _san(host: str):
    from cryptography import x509
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def apply_acls(admin, grants, timeout_s: float = 30.0) -> int:
    """Create the grants (ALLOW, any host) and wait until the broker enforces them; Kafka keeps one copy of each."""
    from kafka.admin import (
        ACL,
        ACLFilter,
        ACLOperation,
        ACLPermissionType,
        ACLResourcePatternType,
        ResourcePattern,
        ResourcePatternFilter,
        ResourceType,
    )
    acls = [ACL(principal=f"User:{g.principal}", host="*", operation=ACLOperation[g.operation],
                permission_type=ACLPermissionType.ALLOW,
                resource_pattern=ResourcePattern(ResourceType[g.resource], g.name,
                                                 ACLResourcePatternType[g.pattern]))
            for g in grants]
    result = admin.create_acls(acls)
    failed = result.get("failed", [])
    if failed:
        acl, err = failed[0]
        raise RuntimeError(f"could not create ACL {acl}: {err}")
    # The controller has them once create_acls answers; a broker's authorizer a moment later. A
    # service that asked for its topics' metadata in between was told "not authorised", and
    # kafka-python kept that answer: its first group assignment came out empty and the consumer
    # idled until its watchdog restarted it 20 s later (seen at every first start of --secure).
    everything = ACLFilter(principal=None, host="*", operation=ACLOperation.ANY,
                           permission_type=ACLPermissionType.ANY,
                           resource_pattern=ResourcePatternFilter(ResourceType.ANY, None, ACLResourcePatternType.ANY))

    def binding(acl) -> tuple:
        pattern = acl.resource_pattern
        return (acl.principal, acl.host, acl.operation, acl.permission_type,
                pattern.resource_type, pattern.resource_name, pattern.pattern_type)

    # Every one of ours, not just as many bindings as ours (another tool's ACLs would count too).
    # The answer comes from one broker; each other broker applies the same metadata log and is
    # at most a moment behind, which the services' own start-up check (kafka_access) rides out.
    wanted = {binding(a) for a in acls}
    deadline = time.monotonic() + timeout_s
    while not wanted <= {binding(a) for a in admin.describe_acls(everything)[0]}:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the broker did not show its {len(acls)} ACLs within {timeout_s:.0f}s")
        time.sleep(0.1)
    return len(acls)
