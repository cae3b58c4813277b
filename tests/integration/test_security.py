"""./run_all.sh up --secure: the embedded broker as a managed cluster would be (SASL_SSL, SCRAM, ACLs).

One secured stack for the module. Every refusal is asked of the real broker: a PLAINTEXT client,
an unknown CA, a wrong password, a principal outside its ACLs.
"""
from __future__ import annotations

import dataclasses
import json
import stat
import subprocess
import sys

import pytest
import requests
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaTimeoutError, TopicAuthorizationFailedError

from lab import paths, security
from lab.stack import ANALYTICS, INVENTORY, PRODUCER, StackError
from services.common.config import ENV_DEFAULTS, Config
from services.common.kafka_access import diagnose, explain
from services.common.kafka_clients import build_client
from services.common.topics import INVENTORY_EVENTS, ORDER_EVENTS
from tests.conftest import make_stack, running
from tests.integration.kafka_reads import wait_for
from tests.integration.test_notebooks import QUICK, lab_env, run_lab


@pytest.fixture(scope="module")
def secure_stack(tmp_path_factory):
    s = dataclasses.replace(make_stack(tmp_path_factory.mktemp("lab-secure"), INITIAL_STOCK=1_000_000), secure=True)
    with running(s):
        yield s


def principal_config(stack, principal: str, **env) -> Config:
    return Config.from_env({**ENV_DEFAULTS, "KAFKA_BOOTSTRAP": stack.bootstrap, "KAFKA_TIMEOUT_MS": "3000",
                            **stack.secure_home.client_env(principal), **env})


def passwords(stack) -> list[str]:
    return [stack.secure_home.password(p) for p in security.PRINCIPALS]


def test_the_seed_steps_and_the_quick_lab_run_secured(secure_stack, tmp_path):
    s = secure_stack
    before = requests.get(s.analytics_url + "/metrics", timeout=30).json()["orders_total"]
    r = requests.post(s.producer_url + "/order", json={"item": "pizza", "qty": 2}, timeout=30)
    assert r.status_code == 201, r.text
    r = requests.post(s.producer_url + "/orders/bulk", json={"n": 1000, "item": "mixed"}, timeout=60)
    assert r.status_code == 201, r.text

    def drained():
        m = requests.get(s.analytics_url + "/metrics", timeout=30).json()
        return m if m["orders_total"] == m["inventory_events_total"] == before + 1001 and m["lag"] \
            and all(x["lag"] == 0 for x in m["lag"]) else None
    wait_for(drained, 120, interval_s=0.5, what="the pipeline to drain")
    assert requests.post(s.analytics_url + "/replay", timeout=120).json()["diff"] == {}
    # The lab's own tooling reads every topic as its admin principal. Before the lab: its
    # delivery-semantics notebook doubles orders on purpose (at-least-once under kills).
    verify = subprocess.run([sys.executable, "-m", "lab.cli", "verify"], cwd=paths.ROOT, capture_output=True,
                            text=True, env=lab_env(s, tmp_path), timeout=300)
    assert "nothing lost, nothing doubled" in verify.stdout, verify.stdout[-2000:] + verify.stderr[-2000:]

    proc = run_lab(s, tmp_path, "--params", str(QUICK))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = (tmp_path / "kafka_metrics_report.txt").read_text()
    assert "secured (SASL_SSL, SCRAM-SHA-512" in report
    everything = report + (tmp_path / "report.html").read_text() + proc.stdout + proc.stderr
    assert not [p for p in passwords(s) if p in everything]


def test_a_plaintext_client_is_refused(secure_stack):
    with pytest.raises(KafkaTimeoutError):
        build_client(KafkaAdminClient, bootstrap_servers=secure_stack.bootstrap, bootstrap_timeout_ms=3000)
    cfg = Config.from_env({"KAFKA_BOOTSTRAP": secure_stack.bootstrap})
    assert diagnose(cfg.bootstrap, cfg.connection).startswith(
        f"the broker at {secure_stack.bootstrap} expects TLS but KAFKA_SECURITY_PROTOCOL=PLAINTEXT")


def test_an_unknown_ca_is_refused_in_one_line(secure_stack, tmp_path):
    other_ca, _ = security.make_certificates()
    (tmp_path / "other-ca.pem").write_bytes(other_ca)
    cfg = principal_config(secure_stack, security.PRODUCER, KAFKA_SSL_CAFILE=str(tmp_path / "other-ca.pem"))
    with pytest.raises(KafkaTimeoutError) as err:
        build_client(KafkaAdminClient, bootstrap_servers=cfg.bootstrap, bootstrap_timeout_ms=3000,
                     **cfg.connection.client_options())
    message = explain(err.value, cfg)
    assert message.startswith(f"TLS to {secure_stack.bootstrap} failed: ") and "KAFKA_SSL_CAFILE" in message
    assert "\n" not in message


def test_a_wrong_password_is_named_at_start_up_and_in_healthz(secure_stack):
    s = secure_stack
    try:
        # inventory-consumer has no HTTP port: restart checks its login itself, and its log says it too.
        with pytest.raises(StackError, match=r"inventory-consumer: login refused at .* for user 'inventory-consumer'"):
            s.restart(INVENTORY, {"KAFKA_SASL_PASSWORD": "not-the-password"})
        log = s.log_file(INVENTORY)
        wait_for(lambda: "login refused" in log.read_text(), 60, what="inventory-consumer to name the refusal")
        with pytest.raises(StackError, match=r"producer-order: login refused at .* for user 'producer-order'"):
            s.restart(PRODUCER, {"KAFKA_SASL_PASSWORD": "not-the-password"})
        health = requests.get(s.producer_url + "/healthz", timeout=5)
        assert health.status_code == 503 and health.json()["error"].startswith("login refused")
        order = requests.post(s.producer_url + "/order", json={"item": "pizza", "qty": 1}, timeout=30)
        assert order.status_code == 503 and "login refused" in order.json()["error"]
        for service in (PRODUCER, INVENTORY):
            text = s.log_file(service).read_text()
            assert "Traceback" not in text, text[-3000:]
            # Said once, not once per retry (twice at most, should one retry's probe see a different fault between).
            assert 1 <= text.count("login refused") <= 2, text[-3000:]
            assert "not-the-password" not in text
    finally:
        s.restart(PRODUCER)
        s.restart(INVENTORY)
    assert requests.get(s.producer_url + "/healthz", timeout=5).json()["kafka"] == "ok"


@pytest.mark.parametrize("service", [PRODUCER, INVENTORY, ANALYTICS])
def test_a_service_without_its_acls_stops_the_restart_in_one_line(secure_stack, service):
    # Logged in as the lab's admin with no ACLs of its own would be everything; as another
    # service's principal it lacks its own topics' rights: producer-order may not read, the
    # consumers may not write OrderEvents' peers. Each must say so, and restart must stop on it.
    s = secure_stack
    other = ANALYTICS if service == PRODUCER else PRODUCER
    env = s.secure_home.client_env(other)
    try:
        with pytest.raises(StackError, match=rf"{service}: not authorised: {other} may not use a topic"):
            s.restart(service, {k: env[k] for k in ("KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD")})
    finally:
        s.restart(service)


def test_producer_orders_principal_may_write_orders_and_nothing_else(secure_stack):
    cfg = principal_config(secure_stack, security.PRODUCER)
    producer = build_client(KafkaProducer, bootstrap_servers=cfg.bootstrap, max_block_ms=5000,
                            **cfg.connection.client_options())
    try:
        producer.send(ORDER_EVENTS, b"{}", key=b"acl-test").get(timeout=30)  # its own topic: allowed
        with pytest.raises(TopicAuthorizationFailedError) as err:
            producer.send(INVENTORY_EVENTS, b"{}").get(timeout=30)
    finally:
        producer.close()
    assert explain(err.value, cfg).startswith("not authorised: producer-order may not use a topic")
    consumer = build_client(KafkaConsumer, bootstrap_servers=cfg.bootstrap, **cfg.connection.client_options())
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            consumer.end_offsets([TopicPartition(INVENTORY_EVENTS, 0)])
    finally:
        consumer.close()


def test_kafkas_own_cli_takes_the_client_properties(secure_stack, tmp_path):
    s = secure_stack

    def topics(principal):
        out = subprocess.run(["java", "-cp", f"{paths.JARS_DIR}/*",
                              f"-Dlog4j2.configurationFile={paths.KAFKA_DIR / 'log4j2.properties'}",
                              f"-Dkafka.logs.file={tmp_path / 'cli.log'}",
                              "org.apache.kafka.tools.TopicCommand", "--bootstrap-server", s.bootstrap,
                              "--command-config", str(s.secure_home.properties_file(principal)), "--list"],
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        return set(out.stdout.split())
    assert {ORDER_EVENTS, INVENTORY_EVENTS, "__consumer_offsets"} <= topics(security.ADMIN)
    # The producer's principal sees only what its ACLs name.
    assert topics(security.PRODUCER) == {ORDER_EVENTS}
    for principal in security.PRINCIPALS:
        assert stat.S_IMODE(s.secure_home.properties_file(principal).stat().st_mode) == 0o600


def test_no_secret_shows_in_logs_endpoints_or_status(secure_stack):
    s = secure_stack
    seen = [requests.get(s.producer_url + path, timeout=10).text
            for path in ("/stats", "/healthz", "/metrics/prometheus")]
    seen += [requests.get(s.analytics_url + path, timeout=30).text
             for path in ("/metrics", "/healthz", "/metrics/prometheus")]
    seen.append(json.dumps(s.status()))
    seen += [f.read_text(errors="replace") for f in (s.home / "logs").iterdir() if f.is_file()]
    leaks = [p for p in passwords(s) for text in seen if p in text]
    assert not leaks, "a password appears in a log, an endpoint or the status"
    # The broker's properties hold the admin password its replication logs in with.
    assert stat.S_IMODE(s.broker.properties_file.stat().st_mode) == 0o600
