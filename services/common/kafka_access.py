"""One line for every way a connection to Kafka fails, and the start-up check that finds it.

kafka-python reports an unreachable broker, a TLS failure and a refused login alike, as
"Unable to bootstrap" after its timeout (its logs say "socket disconnected" for a wrong
password: the broker closes the connection right after refusing it). So when a client cannot
bootstrap, diagnose() looks for itself: a TCP connection, then a TLS handshake with the
client's own settings, and names the first step that fails with the likely fix. Authorisation
errors (ACLs) arrive as typed errors and are named by what was refused.
"""
from __future__ import annotations

import logging
import socket
import ssl
import threading

from kafka import errors as Errors

from services.common.config import Config, ConnectionConfig

log = logging.getLogger(__name__)

# What an ACL refusal stops, by kafka-python's error type.
_DENIED = {
    Errors.TopicAuthorizationFailedError: "a topic",
    Errors.GroupAuthorizationFailedError: "a consumer group",
    Errors.TransactionalIdAuthorizationFailedError: "its transactional id",
    Errors.ClusterAuthorizationFailedError: "a cluster operation",
}


def addresses(bootstrap: str) -> list[tuple[str, int]]:
    """host:port pairs of a bootstrap list ("a:9092,b:9092"; a bare host means port 9092)."""
    out = []
    for item in bootstrap.split(","):
        item = item.strip()
        if not item:
            continue
        host, _, port = item.rpartition(":") if ":" in item else (item, "", "9092")
        out.append((host.strip("[]"), int(port)))
    return out


def is_refusal(message: str) -> bool:
    """A refusal (TLS, login, ACL) stays until a setting changes; an unreachable cluster may come back."""
    return message.startswith(("TLS", "login", "not authorised")) or " expects TLS but " in message


def diagnose(bootstrap: str, conn: ConnectionConfig, timeout_s: float = 3.0) -> str:
    """Why a client with conn's settings cannot bootstrap from bootstrap: one line, with the likely fix."""
    reached = None
    seen = []
    for host, port in addresses(bootstrap):
        try:
            socket.create_connection((host, port), timeout=timeout_s).close()
        except OSError as exc:
            seen.append(f"{host}:{port} {exc.strerror or exc.__class__.__name__}")
            continue
        reached = (host, port)
        break
    if reached is None:
        return (f"cannot reach Kafka at {bootstrap} ({'; '.join(seen) or 'no address'}): check KAFKA_BOOTSTRAP's "
                "hosts and ports, that the brokers run and that nothing blocks the way to them")
    host, port = reached
    where = f"{host}:{port}"
    if conn.uses_tls:
        problem = _tls_problem(host, port, conn, timeout_s)
        if problem:
            return f"TLS to {where} failed: {problem}"
    elif _speaks_tls(host, port, timeout_s):
        return (f"the broker at {where} expects TLS but KAFKA_SECURITY_PROTOCOL={conn.security_protocol}: "
                "use SSL or SASL_SSL (with KAFKA_SSL_CAFILE for a private CA)")
    if conn.uses_sasl:
        return (f"login refused at {where} for user {conn.sasl_username!r} ({conn.sasl_mechanism or 'PLAIN'}): "
                "the connection works but the broker closed it during authentication; check KAFKA_SASL_USERNAME, "
                "KAFKA_SASL_PASSWORD and KAFKA_SASL_MECHANISM")
    return (f"the broker at {where} accepts connections but no client could bootstrap from it with "
            f"KAFKA_SECURITY_PROTOCOL={conn.security_protocol}: if its listener wants SASL, set SASL_SSL or "
            "SASL_PLAINTEXT with a user; else check that it is a broker (not a controller) and its advertised.listeners")


def _tls_problem(host: str, port: int, conn: ConnectionConfig, timeout_s: float) -> str | None:
    """None when a TLS handshake with the client's CA, certificate and host check succeeds; else why not."""
    try:
        ctx = ssl.create_default_context(cafile=conn.ssl_cafile or None)
        if conn.ssl_certfile:
            ctx.load_cert_chain(conn.ssl_certfile, conn.ssl_keyfile or None)
        with socket.create_connection((host, port), timeout=timeout_s) as raw:
            with ctx.wrap_socket(raw, server_hostname=host):
                return None
    except ssl.SSLCertVerificationError as exc:
        reason = exc.verify_message or str(exc)
        if "mismatch" in reason.lower():
            return (f"{reason} (the broker's certificate does not name {host}): connect by a name the "
                    "certificate lists")
        return f"{reason}: set KAFKA_SSL_CAFILE to the CA that signed the broker's certificate"
    except ssl.SSLError as exc:
        if "WRONG_VERSION_NUMBER" in str(exc) or "record layer failure" in str(exc):
            return "the listener does not speak TLS: use PLAINTEXT or SASL_PLAINTEXT for it"
        return f"{exc.reason or exc}: check KAFKA_SSL_CAFILE, KAFKA_SSL_CERTFILE and KAFKA_SSL_KEYFILE"
    except OSError as exc:
        return f"{exc.__class__.__name__}: {exc}"


def _speaks_tls(host: str, port: int, timeout_s: float) -> bool:
    """Whether the listener completes a TLS handshake (certificate unchecked: only the protocol is asked)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as raw:
            with ctx.wrap_socket(raw, server_hostname=host):
                return True
    except (OSError, ssl.SSLError):
        return False


def explain(exc: BaseException, cfg: Config) -> str:
    """One line for a Kafka error a service or the lab met, naming the address or principal and the fix."""
    for error_type, what in _DENIED.items():
        if isinstance(exc, error_type):
            who = cfg.connection.sasl_username or "this client"
            detail = str(exc).split(": ", 1)[-1]
            return (f"not authorised: {who} may not use {what} ({error_type.__name__}: {detail}); "
                    "grant it with an ACL (kafka-acls.sh --add), or connect as a principal that has one")
    if isinstance(exc, Errors.SaslAuthenticationFailedError):
        conn = cfg.connection
        return (f"login refused at {cfg.bootstrap} for user {conn.sasl_username!r} ({conn.sasl_mechanism or 'PLAIN'}): "
                f"{str(exc).split(': ')[-1]}; check KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD and KAFKA_SASL_MECHANISM")
    # Only a client that reached no broker at all is diagnosed: a connection lost to one broker of
    # a cluster (killed, restarting) is a fault of that broker, not of the settings.
    if isinstance(exc, Errors.KafkaTimeoutError) and "bootstrap" in str(exc).lower():
        return diagnose(cfg.bootstrap, cfg.connection)
    return f"{exc.__class__.__name__}: {exc}"


class AccessCheck:
    """Whether this service can connect and log in: checked in the background from start-up on.

    A refusal (TLS, login) is logged once, in one line, and kept for /healthz; an unreachable
    cluster is logged once and retried, since a broker started after the service is normal.
    """

    def __init__(self, cfg: Config, service: str, retry_s: float = 5.0):
        self.cfg = cfg
        self.service = service
        self.retry_s = retry_s
        self.problem: str | None = None     # a refusal: /healthz answers 503 with it
        self.state = "checking"             # checking, ok, unreachable or refused
        self._stop = threading.Event()

    def start(self) -> "AccessCheck":
        threading.Thread(target=self._run, name=f"{self.service}-access-check", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def check_once(self) -> str | None:
        """Connect and log in once; None when that works, else the one-line reason."""
        from services.common import kafka_clients
        try:
            admin = kafka_clients.admin(self.cfg, client_id=f"{self.service}-access")
        except Errors.KafkaError as exc:
            return explain(exc, self.cfg)
        try:
            admin.list_topics()
        except Errors.KafkaError as exc:
            return explain(exc, self.cfg)
        finally:
            admin.close()
        return None

    def _run(self) -> None:
        last = None
        while not self._stop.is_set():
            message = self.check_once()
            if message is None:
                self.problem, self.state = None, "ok"
                log.info("kafka access ok bootstrap=%s as=%s", self.cfg.bootstrap, self.cfg.connection.describe())
                return
            refused = is_refusal(message)
            self.problem = message if refused else None
            self.state = "refused" if refused else "unreachable"
            if message != last:
                (log.error if refused else log.warning)("%s: %s", self.service, message)
                last = message
            self._stop.wait(self.retry_s * (6 if refused else 1))
