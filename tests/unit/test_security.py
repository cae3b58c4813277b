"""lab/security.py: what a secured embedded broker is given, without starting one."""
from __future__ import annotations

import stat

from cryptography import x509

from lab import security
from lab.broker import EmbeddedBroker, EmbeddedCluster
from services.common.topics import INVENTORY_EVENTS, ORDER_EVENTS


def grants_of(principal):
    return {(g.resource, g.name, g.pattern, g.operation) for g in security.service_acls() if g.principal == principal}


def test_producer_order_may_write_orders_only():
    assert grants_of(security.PRODUCER) == {("TOPIC", ORDER_EVENTS, "LITERAL", "WRITE")}


def test_inventory_reads_orders_and_writes_its_outputs_under_its_own_transactional_ids():
    g = grants_of(security.INVENTORY)
    assert ("TOPIC", ORDER_EVENTS, "LITERAL", "READ") in g
    assert ("TOPIC", ORDER_EVENTS, "LITERAL", "WRITE") not in g
    assert {("TOPIC", INVENTORY_EVENTS, "LITERAL", "WRITE"), ("TOPIC", "InventoryState", "LITERAL", "WRITE"),
            ("TOPIC", "OrderEvents.DLQ", "LITERAL", "WRITE"), ("GROUP", "inventory-grp", "LITERAL", "READ"),
            ("TRANSACTIONAL_ID", "inventory-consumer-", "PREFIXED", "WRITE")} <= g


def test_analytics_reads_both_topics_its_groups_and_writes_only_its_dlq_and_snapshots():
    g = grants_of(security.ANALYTICS)
    assert {("TOPIC", ORDER_EVENTS, "LITERAL", "READ"), ("TOPIC", INVENTORY_EVENTS, "LITERAL", "READ"),
            ("GROUP", "analytics-grp", "LITERAL", "READ"), ("GROUP", "analytics-replay-", "PREFIXED", "READ"),
            ("GROUP", "analytics-replay-", "PREFIXED", "DELETE"),
            ("TOPIC", "AnalyticsState", "LITERAL", "READ"), ("TOPIC", "AnalyticsState", "LITERAL", "DESCRIBE")} <= g
    assert sorted(name for (_, name, _, op) in g if op == "WRITE") == ["AnalyticsState", "InventoryEvents.DLQ"]


def test_the_secure_home_is_private_and_its_files_fit_kafkas_clients(tmp_path):
    home = security.SecureHome(tmp_path)
    home.ensure()
    assert stat.S_IMODE(home.dir.stat().st_mode) == 0o700
    for f in (home.broker_pem, *(home.properties_file(p) for p in security.PRINCIPALS)):
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    props = home.properties_file(security.PRODUCER).read_text()
    assert "security.protocol=SASL_SSL" in props and "sasl.mechanism=SCRAM-SHA-512" in props
    assert f'username="producer-order" password="{home.password(security.PRODUCER)}"' in props
    assert f"ssl.truststore.location={home.ca_file}" in props
    # Each principal its own password; a second ensure() keeps them (they are in the storage).
    passwords = {p: home.password(p) for p in security.PRINCIPALS}
    assert len(set(passwords.values())) == len(security.PRINCIPALS)
    home.ensure()
    assert passwords == {p: home.password(p) for p in security.PRINCIPALS}
    env = home.client_env(security.INVENTORY)
    assert env["KAFKA_SASL_USERNAME"] == "inventory-consumer" and env["KAFKA_SSL_CAFILE"] == str(home.ca_file)


def test_the_broker_certificate_is_signed_by_the_ca_for_loopback(tmp_path):
    ca_pem, chain = security.make_certificates()
    ca = x509.load_pem_x509_certificate(ca_pem)
    cert = x509.load_pem_x509_certificates(chain)[0]
    cert.verify_directly_issued_by(ca)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert b"-----BEGIN PRIVATE KEY-----" in chain   # unencrypted PKCS#8, as Kafka's PEM keystore reads it


def test_a_secured_node_listens_sasl_ssl_with_mtls_controllers_and_the_authorizer(tmp_path):
    home = security.SecureHome(tmp_path)
    home.ensure()
    props = EmbeddedBroker(home=tmp_path, port=9092, controller_port=9093, secure=home).server_properties()
    assert "listeners=SASL_SSL://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093" in props
    assert "listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:SSL" in props
    assert "listener.name.controller.ssl.client.auth=required" in props
    assert "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer" in props
    assert "allow.everyone.if.no.acl.found=false" in props
    assert "super.users=User:lab-admin;User:CN=kafka-broker" in props
    assert "PLAINTEXT://" not in props
    args = home.scram_format_args()
    assert args.count("--add-scram") == len(security.PRINCIPALS)
    assert f"SCRAM-SHA-512=[name=producer-order,password={home.password(security.PRODUCER)}]" in args


def test_every_node_of_a_secured_cluster_is_secured(tmp_path):
    cluster = EmbeddedCluster(home=tmp_path, ports=((1, 2), (3, 4), (5, 6)), secure=True)
    assert all(n.secure is not None for n in cluster.nodes)
    assert EmbeddedCluster(home=tmp_path).nodes[0].secure is None
