"""The one-line diagnosis of a client that cannot bootstrap, against real sockets and TLS servers on loopback.

No Kafka here: what is ours is the probe (TCP, then a TLS handshake with the client's settings)
and its wording. The real broker's refusals are in tests/integration/test_security.py.
"""
from __future__ import annotations

import socket
import ssl
import struct
import threading
import time
from contextlib import contextmanager

import pytest
from kafka import errors as Errors

from lab.security import make_certificates
from services.common.config import Config
from services.common.kafka_access import AccessCheck, addresses, diagnose, explain, is_refusal


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve_one(sock, behaviour: str) -> None:
    """kafka: answer one request with its correlation id, as a broker answers ApiVersions; silent: never answer."""
    if behaviour == "silent":
        sock.settimeout(5)
        try:
            sock.recv(1024)
        except OSError:
            pass
        return
    head = sock.recv(4)
    if len(head) == 4:
        body = b""
        size = struct.unpack(">i", head)[0]
        while len(body) < size:
            chunk = sock.recv(size - len(body))
            if not chunk:
                return
            body += chunk
        correlation = body[4:8]
        sock.sendall(struct.pack(">i", 6) + correlation + b"\x00\x00")
        sock.recv(1)


@contextmanager
def server(tmp_path, tls: bool = True, hosts=("localhost", "127.0.0.1"), behaviour: str = "kafka"):
    """A loopback listener (TLS with a certificate from a fresh CA, or plain TCP); yields (port, CA file)."""
    ca, chain = make_certificates(hosts=hosts)
    (tmp_path / "ca.pem").write_bytes(ca)
    (tmp_path / "server.pem").write_bytes(chain)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp_path / "server.pem")
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def handle(conn):
        try:
            if tls:
                with ctx.wrap_socket(conn, server_side=True) as wrapped:
                    _serve_one(wrapped, behaviour)
            else:
                with conn:
                    _serve_one(conn, behaviour)
        except (OSError, ssl.SSLError):
            pass

    def serve():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield listener.getsockname()[1], tmp_path / "ca.pem"
    finally:
        stop.set()
        t.join()
        listener.close()


def tls_server(tmp_path, hosts=("localhost", "127.0.0.1"), behaviour: str = "kafka"):
    return server(tmp_path, tls=True, hosts=hosts, behaviour=behaviour)


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
    assert is_refusal(message)


def test_a_plain_sasl_listener_that_answers_kafka_leaves_the_login_as_the_suspect(tmp_path):
    with server(tmp_path, tls=False) as (port, _ca):
        cfg = config(f"127.0.0.1:{port}", **{**SASL, "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT"})
        message = diagnose(cfg.bootstrap, cfg.connection)
    assert message.startswith(f"login refused at 127.0.0.1:{port} for user 'producer-order'") and is_refusal(message)


@pytest.mark.parametrize("tls", [True, False], ids=["tls", "plain"])
def test_a_listener_that_accepts_and_stays_silent_is_not_called_a_refusal(tmp_path, tls):
    # A broker starting or overloaded accepts and says nothing: that heals, so no refusal is declared.
    with server(tmp_path, tls=tls, behaviour="silent") as (port, ca):
        env = {**SASL, "KAFKA_SSL_CAFILE": str(ca)} if tls else {**SASL, "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT"}
        cfg = config(f"127.0.0.1:{port}", **env)
        message = diagnose(cfg.bootstrap, cfg.connection, timeout_s=0.5)
    assert message.startswith(f"no answer from Kafka at 127.0.0.1:{port}: the port accepts connections but ")
    assert not is_refusal(message)


@pytest.mark.parametrize("bootstrap, expected", [
    ("a:9092,b:9093", [("a", 9092), ("b", 9093)]),
    ("kafka", [("kafka", 9092)]),
    ("[::1]:9093, [::1]", [("::1", 9093), ("::1", 9092)]),
    ("::1", [("::1", 9092)]),
])
def test_bootstrap_addresses(bootstrap, expected):
    assert addresses(bootstrap) == expected


def test_a_bad_bootstrap_entry_is_named_and_explain_does_not_raise():
    with pytest.raises(ValueError, match="'kafka:abc'"):
        addresses("kafka:abc")
    message = explain(Errors.KafkaTimeoutError("Unable to bootstrap from [('kafka', 0)]"), config("kafka:abc"))
    assert message == "KAFKA_BOOTSTRAP has an entry that is not host:port: 'kafka:abc'"


def test_a_login_without_a_user_says_so_and_the_error_name_is_said_once():
    message = explain(Errors.SaslAuthenticationFailedError("Authentication failed"), config("127.0.0.1:9092"))
    assert message.startswith("login refused at 127.0.0.1:9092 for no user (KAFKA_SASL_USERNAME is empty) (PLAIN): "
                              "Authentication failed;")
    denied = explain(Errors.TopicAuthorizationFailedError(), config("127.0.0.1:9092"))
    assert denied.count("TopicAuthorizationFailed") == 0 and denied.startswith("not authorised: this client may not")


class _Scripted(AccessCheck):
    """The check's state machine over a scripted sequence of answers (the answers themselves are tested above)."""

    def __init__(self, answers, **kw):
        super().__init__(config("127.0.0.1:9092"), "producer-order", retry_s=0.01, **kw)
        self.answers = list(answers)

    def check_once(self):
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


def wait_for(predicate, timeout_s=5.0):
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline
        time.sleep(0.01)


LOGIN = "login refused at 127.0.0.1:9092 for user 'x' (PLAIN): check it"


def test_one_refusal_followed_by_success_never_shows_in_healthz():
    check = _Scripted([LOGIN, None]).start()
    try:
        wait_for(lambda: check.state == "ok")
        assert check.problem is None
    finally:
        check.stop()


def test_a_refusal_seen_twice_is_kept_for_healthz_and_logged_once(caplog):
    check = _Scripted([LOGIN]).start()
    try:
        wait_for(lambda: check.state == "refused")
        assert check.problem == LOGIN
    finally:
        check.stop()
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == [f"producer-order: {LOGIN}"]


def test_an_unreachable_cluster_is_not_a_refusal_and_the_check_stops():
    check = _Scripted(["cannot reach Kafka at 127.0.0.1:9092 (refused): check"]).start()
    try:
        wait_for(lambda: check.state == "unreachable")
        assert check.problem is None
    finally:
        check.stop()
    assert not check._thread.is_alive()


@pytest.mark.parametrize("error, start", [
    (Errors.TopicAuthorizationFailedError("InventoryEvents"), "not authorised: producer-order may not use a topic"),
    (Errors.GroupAuthorizationFailedError("inventory-grp"),
     "not authorised: producer-order may not use a consumer group"),
    (Errors.TransactionalIdAuthorizationFailedError(),
     "not authorised: producer-order may not use its transactional id"),
    (Errors.SaslAuthenticationFailedError("SaslAuthenticationFailedError: invalid credentials"),
     "login refused at 127.0.0.1:9092 for user 'producer-order' (SCRAM-SHA-512): invalid credentials"),
    # A connection lost to one broker of a cluster is that broker's fault, not the settings': no diagnosis.
    (Errors.KafkaConnectionError("socket disconnected"), "KafkaConnectionError: "),
])
def test_kafka_errors_become_one_line(error, start):
    message = explain(error, config("127.0.0.1:9092", **{**SASL, "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT"}))
    assert message.startswith(start) and "\n" not in message
