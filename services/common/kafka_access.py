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
import struct
import threading
import time

from kafka import errors as Errors

from services.common.config import Config, ConnectionConfig
from services.common.topics import INVENTORY_EVENTS, INVENTORY_STATE, ORDER_EVENTS

log = logging.getLogger(__name__)

# What an ACL refusal stops, by kafka-python's error type.
_DENIED = {
    Errors.TopicAuthorizationFailedError: "a topic",
    Errors.GroupAuthorizationFailedError: "a consumer group",
    Errors.TransactionalIdAuthorizationFailedError: "its transactional id",
    Errors.ClusterAuthorizationFailedError: "a cluster operation",
}


def addresses(bootstrap: str) -> list[tuple[str, int]]:
    """host:port pairs of a bootstrap list ("a:9092,[::1]:9093"; a bare host means port 9092).

    ValueError names a bad entry.
    """
    out = []
    for item in bootstrap.split(","):
        item = item.strip()
        if not item:
            continue
        if item.startswith("["):                        # [IPv6]:port or [IPv6]
            host, _, rest = item[1:].partition("]")
            port = rest[1:] if rest.startswith(":") else "9092"
        elif item.count(":") == 1:
            host, _, port = item.partition(":")
        else:                                          # a name, or a bare IPv6 address
            host, port = item, "9092"
        if not host or not port.isdigit():
            raise ValueError(f"KAFKA_BOOTSTRAP has an entry that is not host:port: {item!r}")
        out.append((host, int(port)))
    return out


def is_refusal(message: str) -> bool:
    """A refusal (TLS, login, ACL) stays until a setting changes; an unreachable cluster may come back."""
    return message.startswith(("TLS", "login", "not authorised")) or " expects TLS but " in message


def diagnose(bootstrap: str, conn: ConnectionConfig, timeout_s: float = 3.0) -> str:
    """Why a client with conn's settings cannot bootstrap from bootstrap: one line, with the likely fix.

    A refusal is named only when the broker showed itself: it finished a TLS handshake and
    answered a Kafka ApiVersions request (which every listener answers before a login). A
    port that accepts and then stays silent or resets is a broker starting or overloaded, and
    is reported as not answering, which the services retry rather than declare refused.
    """
    try:
        targets = addresses(bootstrap)
    except ValueError as exc:
        return str(exc)
    reached = None
    seen = []
    for host, port in targets:
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

    def silent(why: str) -> str:
        return (f"no answer from Kafka at {where}: the port accepts connections but {why}; the broker may be "
                "starting or overloaded, else check that KAFKA_BOOTSTRAP names a broker listener")

    if conn.uses_tls:
        try:
            tls = _client_tls(conn)
        except (OSError, ValueError) as exc:
            return (f"TLS to {where} failed: the client's own TLS files do not load ({exc}): check KAFKA_SSL_CAFILE, "
                    "KAFKA_SSL_CERTFILE and KAFKA_SSL_KEYFILE")
        try:
            answered = _answers_kafka(host, port, timeout_s, tls)
        except _Refused as exc:
            return f"TLS to {where} failed: {exc}"
        except OSError as exc:
            return silent(f"the TLS handshake did not finish ({exc.__class__.__name__})")
    else:
        if _speaks_tls(host, port, timeout_s):
            return (f"the broker at {where} expects TLS but KAFKA_SECURITY_PROTOCOL={conn.security_protocol}: "
                    "use SSL or SASL_SSL (with KAFKA_SSL_CAFILE for a private CA)")
        try:
            answered = _answers_kafka(host, port, timeout_s)
        except OSError as exc:
            return silent(f"closed or reset the connection ({exc.__class__.__name__})")
    if not answered:
        return silent("it did not answer a Kafka request")
    if conn.uses_sasl:
        return (f"login refused at {where} for {_who(conn)} ({conn.sasl_mechanism or 'PLAIN'}): the broker "
                "answers but no client could log in; check KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD and "
                "KAFKA_SASL_MECHANISM")
    return (f"the broker at {where} answers but no client could bootstrap from it with "
            f"KAFKA_SECURITY_PROTOCOL={conn.security_protocol}: if its listener wants SASL, set SASL_SSL or "
            "SASL_PLAINTEXT with a user; else check that it is a broker (not a controller) "
            "and its advertised.listeners")


class _Refused(Exception):
    """The TLS handshake was refused for a reason a setting fixes (certificate, CA, protocol)."""


def _who(conn: ConnectionConfig) -> str:
    return f"user {conn.sasl_username!r}" if conn.sasl_username else "no user (KAFKA_SASL_USERNAME is empty)"


def _client_tls(conn: ConnectionConfig) -> ssl.SSLContext:
    """The client's own TLS settings: its CA, its certificate for mTLS, host names checked."""
    ctx = ssl.create_default_context(cafile=conn.ssl_cafile or None)
    if conn.ssl_certfile:
        ctx.load_cert_chain(conn.ssl_certfile, conn.ssl_keyfile or None)
    return ctx


# ApiVersions v0, correlation id 0x4c4142 ("LAB"), client id "lab-diagnose": the one request a
# Kafka listener answers before TLS-checked login and SASL alike (KIP-35, KIP-43).
_CORRELATION = 0x4C4142
_CLIENT_ID = b"lab-diagnose"
_API_VERSIONS = (struct.pack(">hhih", 18, 0, _CORRELATION, len(_CLIENT_ID)) + _CLIENT_ID)
_API_VERSIONS = struct.pack(">i", len(_API_VERSIONS)) + _API_VERSIONS


def _answers_kafka(host: str, port: int, timeout_s: float, tls: ssl.SSLContext | None = None) -> bool:
    """Whether the listener answers a Kafka request (over TLS with tls): False when it stays silent.

    OSError when the connection fails, resets or times out; _Refused when TLS is refused.
    """
    with socket.create_connection((host, port), timeout=timeout_s) as raw:
        sock = raw
        if tls is not None:
            try:
                sock = tls.wrap_socket(raw, server_hostname=host)
            except ssl.SSLCertVerificationError as exc:
                reason = exc.verify_message or str(exc)
                if "mismatch" in reason.lower():
                    raise _Refused(f"{reason} (the broker's certificate does not name {host}): connect by a "
                                   "name the certificate lists") from None
                raise _Refused(f"{reason}: set KAFKA_SSL_CAFILE to the CA that signed the broker's "
                               "certificate") from None
            except ssl.SSLError as exc:
                if "WRONG_VERSION_NUMBER" in str(exc) or "record layer failure" in str(exc):
                    raise _Refused("the listener does not speak TLS: use PLAINTEXT or SASL_PLAINTEXT for it") from None
                raise _Refused(f"{exc.reason or exc}: check KAFKA_SSL_CAFILE, KAFKA_SSL_CERTFILE and "
                               "KAFKA_SSL_KEYFILE") from None
        try:
            sock.sendall(_API_VERSIONS)
            head = b""
            while len(head) < 8:
                chunk = sock.recv(8 - len(head))
                if not chunk:
                    return False
                head += chunk
        except OSError:      # a timeout, a reset or a TLS alert after the handshake: no Kafka answer
            return False
        finally:
            if sock is not raw:
                sock.close()
    return struct.unpack(">ii", head)[1] == _CORRELATION


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
    """One line for a Kafka error a service or the lab met: the address or principal and the fix; never raises."""
    try:
        return _explain(exc, cfg)
    except Exception as failure:  # noqa: BLE001 - the diagnosis must not replace the error it explains
        return f"{exc.__class__.__name__}: {exc} (and the diagnosis failed: {failure!r})"


def _detail(exc: BaseException) -> str:
    """What kafka-python said beyond the error's name ("[Error 29] TopicAuthorizationFailedError: x" gives "x")."""
    text = str(exc)
    for prefix in (exc.__class__.__name__ + ": ", exc.__class__.__name__):
        if prefix in text:
            text = text.split(prefix, 1)[1]
    return text.strip(" :")


def _explain(exc: BaseException, cfg: Config) -> str:
    for error_type, what in _DENIED.items():
        if isinstance(exc, error_type):
            who = cfg.connection.sasl_username or "this client"
            detail = _detail(exc)
            return (f"not authorised: {who} may not use {what}{f' ({detail})' if detail else ''}; "
                    "grant it with an ACL (kafka-acls.sh --add), or connect as a principal that has one")
    if isinstance(exc, Errors.SaslAuthenticationFailedError):
        conn = cfg.connection
        detail = _detail(exc)
        return (f"login refused at {cfg.bootstrap} for {_who(conn)} ({conn.sasl_mechanism or 'PLAIN'})"
                f"{f': {detail}' if detail else ''}; check KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD and "
                "KAFKA_SASL_MECHANISM")
    # Only a client that reached no broker at all is diagnosed: a connection lost to one broker of
    # a cluster (killed, restarting) is a fault of that broker, not of the settings.
    if isinstance(exc, Errors.KafkaTimeoutError) and "bootstrap" in str(exc).lower():
        return diagnose(cfg.bootstrap, cfg.connection)
    return f"{exc.__class__.__name__}: {_detail(exc) or exc}"


# What each service must be allowed on its topics: the start-up check asks the broker for these,
# so a missing ACL is named at start-up rather than found by a consumer that idles.
NEEDS = {
    "producer-order": {ORDER_EVENTS: "WRITE"},
    "inventory-consumer": {ORDER_EVENTS: "READ", INVENTORY_EVENTS: "WRITE", INVENTORY_STATE: "WRITE"},
    "analytics-consumer": {ORDER_EVENTS: "READ", INVENTORY_EVENTS: "READ"},
}
_TOPIC_AUTHORIZATION_FAILED = 29


def check_access(cfg: Config, service: str) -> str | None:
    """Connect, log in and ask what service may do on its topics, once; None when all is allowed, else one line."""
    from services.common import kafka_clients
    try:
        admin = kafka_clients.admin(cfg, client_id=f"{service}-access")
    except Exception as exc:  # noqa: BLE001 - whatever fails, the check answers in one line
        return explain(exc, cfg)
    try:
        needs = NEEDS.get(service, {})
        if not needs:
            admin.list_topics()
            return None
        for topic in admin.describe_topics(sorted(needs)):
            name = topic.get("name") or topic.get("topic")
            want = needs.get(name)
            if topic.get("error_code") == _TOPIC_AUTHORIZATION_FAILED:
                return explain(Errors.TopicAuthorizationFailedError(name), cfg)
            # A broker without an authorizer reports every operation; a missing topic is not ours to judge.
            ops = _operations(topic.get("authorized_operations", topic.get("topic_authorized_operations")))
            if want and ops and want not in ops and "ALL" not in ops:
                return explain(Errors.TopicAuthorizationFailedError(f"{want} on {name}"), cfg)
        return None
    except Exception as exc:  # noqa: BLE001
        return explain(exc, cfg)
    finally:
        try:
            admin.close()
        except Exception:  # noqa: BLE001 - closing a client that never connected may fail; nothing to keep
            pass


def _operations(value) -> set[str]:
    """ACL operation names from a metadata answer: a bit field, a list of codes or of names; empty when not given."""
    from kafka.admin import ACLOperation
    if value is None or (isinstance(value, int) and value < 0):    # INT_MIN: the broker did not say
        return set()
    if isinstance(value, int):
        value = [bit for bit in range(32) if value & (1 << bit)]
    names = set()
    for op in value:
        try:
            names.add(op if isinstance(op, str) else ACLOperation(op).name)
        except ValueError:
            continue
    return names


def settled_refusal(cfg: Config, service: str, strikes: int = 2, pause_s: float = 2.0) -> str | None:
    """A refusal seen strikes times in a row (a transient answer does not make one); None otherwise."""
    for strike in range(strikes):
        message = check_access(cfg, service)
        if message is None or not is_refusal(message):
            return None
        if strike + 1 < strikes:
            time.sleep(pause_s)
    return message


class AccessCheck:
    """Whether this service can connect, log in and use its topics: checked in the background from start-up on.

    A refusal (TLS, login, ACL) must be seen twice in a row; then it is logged once, in one line,
    and kept for /healthz. An unreachable cluster is logged once and retried, since a broker
    started after the service is normal. The check ends at the first success.
    """

    def __init__(self, cfg: Config, service: str, retry_s: float = 5.0, strikes: int = 2):
        self.cfg = cfg
        self.service = service
        self.retry_s = retry_s
        self.strikes = strikes
        self.problem: str | None = None     # a refusal: /healthz answers 503 with it
        self.state = "checking"             # checking, ok, unreachable or refused
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "AccessCheck":
        self._thread = threading.Thread(target=self._run, name=f"{self.service}-access-check", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def check_once(self) -> str | None:
        """Connect, log in and check the topics once; None when that works, else the one-line reason."""
        return check_access(self.cfg, self.service)

    def _run(self) -> None:
        last, seen = None, 0
        while not self._stop.is_set():
            message = self.check_once()
            if message is None:
                self.problem, self.state = None, "ok"
                log.info("kafka access ok bootstrap=%s as=%s", self.cfg.bootstrap, self.cfg.connection.describe())
                return
            refused = is_refusal(message)
            seen = seen + 1 if refused and message == last else (1 if refused else 0)
            if refused and seen < self.strikes:
                last = message
                self._stop.wait(min(self.retry_s, 2.0))   # once more before it counts: a transient is not a refusal
                continue
            self.problem = message if refused else None
            self.state = "refused" if refused else "unreachable"
            if message != last or seen == self.strikes:
                (log.error if refused else log.warning)("%s: %s", self.service, message)
            last = message
            self._stop.wait(self.retry_s * (6 if refused else 1))
