"""The one-line diagnosis of a client that cannot bootstrap, against real sockets and TLS servers on loopback.

No Kafka here: what is ours is the probe (TCP, then a TLS handshake with the client's settings)
and its wording. The real broker's refusals are in tests/integration/test_security.py.
"""
from __future__ import annotations

import socket
import ssl
import threading
from contextlib import contextmanager

import pytest
from kafka import errors as Errors

from lab.security import make_certificates
from services.common.config import Config
from services.common.kafka_access import diagnose, explain, is_refusal


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def tls_server(tmp_path, hosts=("localhost", "127.0.0.1")):
    """A loopback TLS server with a certificate from a fresh CA; yields (port, CA file)."""
    ca, chain = make_certificates(hosts=hosts)
    (tmp_path / "ca.pem").write_bytes(ca)
    (tmp_path / "server.pem").write_bytes(chain)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp_path / "server.pem")
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            try:
                with ctx.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(1)
            except (OSError, ssl.SSLError):
                pass

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield listener.getsockname()[1], tmp_path / "ca.pem"
    finally:
        stop.set()
        t.join()
        listener.close()


def config(bootstrap, **env) -> Config:
    return Config.from_env({"KAFKA_BOOTSTRAP": bootstrap, **env})


SASL = {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "KAFKA_SASL_USERNAME": "producer-order", "KAFKA_SASL_PASSWORD": "pw"}


def test_nothing_listening_names_every_address_and_what_to_check():
    a, b = closed_port(), closed_port()
    cfg = config(f"127.0.0.1:{a},127.0.0.1:{b}")
    message = diagnose(cfg.bootstrap, cfg.connection)
    assert message.startswith(f"cannot reach Kafka at 127.0.0.1:{a},127.0.0.1:{b} (127.0.0.1:{a} Connection refused; ")
    assert "check KAFKA_BOOTSTRAP" in message and not is_refusal(message)


def test_an_unknown_ca_says_to_set_the_ca_file(tmp_path):
    with tls_server(tmp_path) as (port, _ca):
        cfg = config(f"127.0.0.1:{port}", **SASL)   # no KAFKA_SSL_CAFILE: the system's store
        message = diagnose(cfg.bootstrap, cfg.connection)
    assert message.startswith(f"TLS to 127.0.0.1:{port} failed: ")
    assert "set KAFKA_SSL_CAFILE to the CA that signed the broker's certificate" in message
    assert is_refusal(message)


def test_a_certificate_for_another_host_says_so(tmp_path):
    with tls_server(tmp_path, hosts=("kafka.example",)) as (port, ca):
        cfg = config(f"127.0.0.1:{port}", **SASL, KAFKA_SSL_CAFILE=str(ca))
        message = diagnose(cfg.bootstrap, cfg.connection)
    assert "mismatch" in message and "does not name 127.0.0.1" in message and is_refusal(message)


def test_a_plaintext_client_to_a_tls_listener_is_told_to_use_tls(tmp_path):
    with tls_server(tmp_path) as (port, _ca):
        cfg = config(f"127.0.0.1:{port}")
        message = diagnose(cfg.bootstrap, cfg.connection)
    assert message.startswith(f"the broker at 127.0.0.1:{port} expects TLS but KAFKA_SECURITY_PROTOCOL=PLAINTEXT")
    assert is_refusal(message)


def test_tls_that_works_leaves_the_login_as_the_suspect(tmp_path):
    with tls_server(tmp_path) as (port, ca):
        cfg = config(f"127.0.0.1:{port}", **SASL, KAFKA_SSL_CAFILE=str(ca))
        message = diagnose(cfg.bootstrap, cfg.connection)
    assert message.startswith(f"login refused at 127.0.0.1:{port} for user 'producer-order' (SCRAM-SHA-512)")
    assert "pw" not in message.split("(SCRAM-SHA-512)")[1].replace("KAFKA_SASL_PASSWORD", "")


@pytest.mark.parametrize("error, start", [
    (Errors.TopicAuthorizationFailedError("InventoryEvents"), "not authorised: producer-order may not use a topic"),
    (Errors.GroupAuthorizationFailedError("inventory-grp"), "not authorised: producer-order may not use a consumer group"),
    (Errors.TransactionalIdAuthorizationFailedError(), "not authorised: producer-order may not use its transactional id"),
    (Errors.SaslAuthenticationFailedError("SaslAuthenticationFailedError: invalid credentials"),
     "login refused at 127.0.0.1:9092 for user 'producer-order' (SCRAM-SHA-512): invalid credentials"),
    # A connection lost to one broker of a cluster is that broker's fault, not the settings': no diagnosis.
    (Errors.KafkaConnectionError("socket disconnected"), "KafkaConnectionError: "),
])
def test_kafka_errors_become_one_line(error, start):
    message = explain(error, config("127.0.0.1:9092", **{**SASL, "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT"}))
    assert message.startswith(start) and "\n" not in message
