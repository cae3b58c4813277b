"""Stack control for the embedded stack: the broker, the topics and the three services as processes.

`./run_all.sh up|down|status|logs|restart` and the notebooks use the same Stack object. What every stack
shares (LabStack, StackError, restore_services) is in lab/labstack.py, the status in lab/stackstatus.py.
"""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from lab import paths, processes, security, topology
from lab.broker import EmbeddedBroker, EmbeddedCluster, node_ports
from lab.labstack import LabStack, StackError, admin_session, explain, restore_services  # noqa: F401 (re-exported)
from lab.security import SecureHome
from lab.stackstatus import StackStatus
from lab.topology import ANALYTICS, APP_SERVICES, INVENTORY, KAFKA, PRODUCER, SERVICES  # noqa: F401 (re-exported)
from services.common.config import masked


@dataclass
class Stack(StackStatus):
    """One embedded stack whose state (data, logs, pid files) lives under home."""
    home: Path = paths.STATE_DIR
    kafka_port: int = topology.KAFKA_PORT
    controller_port: int = topology.KAFKA_CONTROLLER_PORT
    producer_port: int = topology.HTTP_PORTS[PRODUCER]
    analytics_port: int = topology.HTTP_PORTS[ANALYTICS]
    external_bootstrap: str | None = None   # KAFKA_BOOTSTRAP: use that cluster, start no broker
    env: dict = field(default_factory=dict)  # extra environment for every service
    progress: object = print
    # Embedded brokers: None means as many as this home's cluster was last started with (1 at first).
    brokers: int | None = None
    broker_ports: tuple = ()                 # (client, controller) per node; default node_ports()
    # --secure: SASL_SSL, SCRAM users, ACLs per service. None means as this home was last started.
    secure: bool | None = None

    @classmethod
    def from_env(cls, environ=None, **kw) -> "Stack":
        """The stack run_all.sh controls: ports and KAFKA_BOOTSTRAP from the environment."""
        e = os.environ if environ is None else environ
        return cls(
            home=Path(e.get("LAB_HOME", paths.STATE_DIR)),
            kafka_port=int(e.get("KAFKA_PORT", topology.KAFKA_PORT)),
            controller_port=int(e.get("KAFKA_CONTROLLER_PORT", topology.KAFKA_CONTROLLER_PORT)),
            producer_port=int(e.get("PRODUCER_PORT", topology.HTTP_PORTS[PRODUCER])),
            analytics_port=int(e.get("ANALYTICS_PORT", topology.HTTP_PORTS[ANALYTICS])),
            external_bootstrap=e.get("KAFKA_BOOTSTRAP") or None,
            brokers=int(e["LAB_BROKERS"]) if e.get("LAB_BROKERS") else None,
            secure=True if e.get("LAB_SECURE") == "1" else None,
            **kw,
        )

    # -- addresses -------------------------------------------------------------------------
    def _cluster_file(self) -> Path:
        return self.home / "run" / "kafka-cluster.json"

    def _saved_shape(self) -> dict:
        try:
            return json.loads(self._cluster_file().read_text())
        except FileNotFoundError:
            return {}

    @property
    def broker_count(self) -> int:
        if self.brokers:
            return self.brokers
        return int(self._saved_shape().get("brokers", 1))

    @property
    def is_secure(self) -> bool:
        """Whether the embedded brokers run secured (an external cluster's security is the environment's)."""
        if self.external_bootstrap:
            return False
        return self.secure if self.secure is not None else bool(self._saved_shape().get("secure", False))

    @property
    def secure_home(self) -> SecureHome:
        return SecureHome(self.home)

    @property
    def cluster(self) -> EmbeddedCluster:
        ports = self.broker_ports or tuple(node_ports(self.kafka_port, self.controller_port, i)
                                           for i in range(1, self.broker_count + 1))
        return EmbeddedCluster(home=self.home, ports=tuple(ports), secure=self.is_secure)

    @property
    def broker(self) -> EmbeddedBroker:
        """The first node: the single broker, or node 1 of a cluster."""
        return self.cluster.nodes[0]

    @property
    def bootstrap(self) -> str:
        return self.external_bootstrap or self.cluster.bootstrap

    @property
    def kind(self) -> str:
        return "external" if self.external_bootstrap else "embedded"

    def describe(self) -> str:
        """One line for the report's versions section: where the broker runs."""
        if self.external_bootstrap:
            return f"external cluster at {self.bootstrap}"
        n = self.broker_count
        secured = f", secured ({security.describe()})" if self.is_secure else ""
        if n > 1:
            rf = self.cluster.replication
            return (f"embedded, KRaft, {n} brokers (replication {rf}, min ISR {2 if rf >= 3 else 1}){secured} "
                    f"at {self.bootstrap}")
        return f"embedded, KRaft{secured}, at {self.bootstrap}"

    def child_environment(self) -> dict[str, str]:
        """What a child process (a notebook's kernel) needs for Stack.from_env to find this very stack.

        An empty value removes the variable (LAB_STACK: a compose setting must not leak in).
        """
        return {
            "LAB_STACK": "",
            "LAB_HOME": str(self.home),
            "KAFKA_PORT": str(self.kafka_port),
            "KAFKA_CONTROLLER_PORT": str(self.controller_port),
            "PRODUCER_PORT": str(self.producer_port),
            "ANALYTICS_PORT": str(self.analytics_port),
            "KAFKA_BOOTSTRAP": self.external_bootstrap or "",
            "LAB_BROKERS": str(self.broker_count) if not self.external_bootstrap else "",
            "LAB_SECURE": "1" if self.is_secure else "",
        }

    @property
    def producer_url(self) -> str:
        return f"http://127.0.0.1:{self.producer_port}"

    @property
    def analytics_url(self) -> str:
        return f"http://127.0.0.1:{self.analytics_port}"

    def service_config(self, principal: str = security.ADMIN):
        """A services Config pointing at this stack (for notebooks and tests that talk to Kafka).

        On a secured stack it logs in as principal: the lab's tooling is the admin.
        """
        from services.common.config import Config
        return Config.from_env({**os.environ, **self._service_env(principal=principal)})

    # -- files -----------------------------------------------------------------------------
    def _pid_file(self, service: str, i: int = 0) -> Path:
        return self.home / "run" / f"{service}-{i}.pid"

    def log_file(self, service: str, i: int = 0) -> Path:
        if service == KAFKA:
            return self.cluster.nodes[i].log_file
        return self.home / "logs" / f"{service}-{i}.log"

    def _settings_file(self, service: str) -> Path:
        return self.home / "run" / f"{service}.json"

    def _settings(self, service: str) -> dict:
        try:
            return json.loads(self._settings_file(service).read_text())
        except FileNotFoundError:
            return {"overrides": {}, "instances": 1}

    def _pids(self, service: str) -> list[int]:
        if service == KAFKA:
            return self.cluster.running_pids()
        files = sorted((self.home / "run").glob(f"{service}-*.pid"))
        return [p for p in (processes.running_pid(f) for f in files) if p]

    # -- operations ------------------------------------------------------------------------
    def up(self) -> None:
        """Start whatever is not running: broker, topics, services. Idempotent."""
        if self.external_bootstrap:
            if self.secure:
                raise StackError("--secure secures the embedded brokers, and KAFKA_BOOTSTRAP names a cluster of its "
                                 "own: set KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_* and KAFKA_SSL_CAFILE for it instead")
            self.progress(f"[kafka] using the existing cluster at {self.external_bootstrap}")
        else:
            if self.brokers:
                self._check_size(self.brokers)
            if self.secure is not None:
                self._check_security(self.secure)
            if self.brokers or self.secure is not None:
                self._cluster_file().parent.mkdir(parents=True, exist_ok=True)
                self._cluster_file().write_text(json.dumps({"brokers": self.broker_count, "secure": self.is_secure}))
            self.cluster.start(progress=self.progress)
        self.ensure_topics()
        if self.is_secure:
            self.apply_acls()
        for service in APP_SERVICES:
            s = self._settings(service)
            self._start(service, s["overrides"], s["instances"])
        self.wait_healthy()

    def ensure_topics(self) -> None:
        from services.common.topics import ensure_topics
        cfg = self.service_config()
        with admin_session(cfg, "create the topics") as admin:
            created = ensure_topics(admin, replication_factor=cfg.topic_replication_factor)
        if created:
            self.progress(f"[kafka] created topics {', '.join(created)}")

    def apply_acls(self) -> None:
        """Give each service's principal its ACLs (idempotent), and say where the client settings are."""
        try:
            with admin_session(self.service_config(), "set the services' ACLs") as admin:
                n = security.apply_acls(admin, security.service_acls())
        except RuntimeError as exc:
            raise StackError(str(exc)) from None
        self.progress(f"[kafka] secured: SASL_SSL with {security.MECHANISM}, {n} ACLs for "
                      f"{', '.join(security.PRINCIPALS[1:])}; "
                      f"client settings in {self.secure_home.dir}/<principal>.properties")

    def _service_env(self, overrides: dict | None = None, principal: str = security.ADMIN) -> dict:
        # The lab's topics get as many replicas as the embedded cluster gives its internal ones.
        replication = {} if self.external_bootstrap or self.broker_count == 1 else \
            {"TOPIC_REPLICATION_FACTOR": str(self.cluster.replication)}
        # A secured stack: each service logs in as itself, the lab's tooling as the admin.
        credentials = self.secure_home.client_env(principal) if self.is_secure else {}
        return {
            **replication,
            **credentials,
            "KAFKA_BOOTSTRAP": self.bootstrap,
            "PRODUCER_PORT": str(self.producer_port),
            "ANALYTICS_PORT": str(self.analytics_port),
            **{k: str(v) for k, v in self.env.items()},
            **{k: str(v) for k, v in (overrides or {}).items()},
        }

    def _command(self, service: str) -> list[str]:
        # The same commands the compose file runs (lab/topology.py), bound to loopback.
        port = {PRODUCER: self.producer_port, ANALYTICS: self.analytics_port}.get(service)
        try:
            return topology.command(service, host="127.0.0.1", port=port, python=sys.executable,
                                    gunicorn=str(Path(sys.executable).parent / "gunicorn"))
        except ValueError as exc:
            raise StackError(str(exc)) from None

    def _start(self, service: str, overrides: dict, instances: int) -> None:
        running = self._pids(service)
        if running:
            return
        self._settings_file(service).parent.mkdir(parents=True, exist_ok=True)
        # 0600: an override may be a password (KAFKA_SASL_PASSWORD), kept for the next start.
        security.write_private(self._settings_file(service),
                               json.dumps({"overrides": overrides, "instances": instances}))
        env = {**os.environ, "PYTHONPATH": str(paths.ROOT), "PYTHONUNBUFFERED": "1",
               **self._service_env(overrides, principal=service)}
        for i in range(instances):
            processes.start(self._command(service), pid_file=self._pid_file(service, i),
                            log_file=self.log_file(service, i), env={**env, "INSTANCE_ID": str(i)},
                            cwd=paths.ROOT)
        extra = " ".join(f"{k}={v}" for k, v in masked(overrides).items())
        times = f" x{instances}" if instances > 1 else ""
        self.progress(f"[{service}] started{times}{f' with {extra}' if extra else ''}")

    def _stop_service(self, service: str) -> None:
        for f in sorted((self.home / "run").glob(f"{service}-*.pid")):
            processes.stop(f, timeout=20)

    def wait_healthy(self, timeout: float = 60.0, services: tuple = APP_SERVICES) -> None:
        """Wait until services (all by default) are up: the HTTP ones answer /healthz, every worker is alive."""
        deadline = time.monotonic() + timeout
        for service, url in ((PRODUCER, self.producer_url), (ANALYTICS, self.analytics_url)):
            if service not in services:
                continue
            while True:
                if not self._pids(service):
                    raise StackError(f"{service} exited at start. Last lines of {self.log_file(service)}:\n"
                                     + processes.tail(self.log_file(service)))
                try:
                    r = requests.get(url + "/healthz", timeout=1)
                    # Healthy once it answers and has tried its way into Kafka (a refusal is a 503 below).
                    if r.ok and r.json().get("kafka") != "checking":
                        break
                    # A refused connection (TLS, login) does not heal by waiting: say it now.
                    if r.status_code == 503 and r.headers.get("content-type", "").startswith("application/json"):
                        error = r.json().get("error")
                        if error:
                            raise StackError(f"{service}: {error}")
                except requests.RequestException:
                    pass
                if time.monotonic() > deadline:
                    raise StackError(f"{service} did not answer {url}/healthz within {timeout:.0f}s; "
                                     f"see {self.log_file(service)}")
                time.sleep(0.2)
        if INVENTORY not in services:
            return
        settings = self._settings(INVENTORY)
        if len(self._pids(INVENTORY)) < settings["instances"]:
            raise StackError(f"{INVENTORY} exited at start. Last lines of {self.log_file(INVENTORY)}:\n"
                             + processes.tail(self.log_file(INVENTORY)))
        # inventory has no /healthz: its access (login, ACLs on its topics) is checked here with its
        # own settings, so a refusal stops `up` as it does for the HTTP services.
        # (An embedded PLAINTEXT broker has no logins or ACLs to refuse: nothing to ask there.)
        from services.common.config import Config
        from services.common.kafka_access import settled_refusal
        cfg = Config.from_env({**os.environ, **self._service_env(settings["overrides"], INVENTORY)})
        if cfg.connection.uses_sasl or cfg.connection.uses_tls or self.external_bootstrap:
            refusal = settled_refusal(cfg, INVENTORY)
            if refusal:
                raise StackError(f"{INVENTORY}: {refusal}")

    def down(self, wipe: bool = False) -> None:
        """Stop every service and the broker; with wipe, delete the broker's data too."""
        for service in reversed(APP_SERVICES):
            if self._pids(service):
                self.progress(f"[{service}] stopping")
            self._stop_service(service)
        if not self.external_bootstrap:
            cluster = self.cluster
            if cluster.running_pids():
                self.progress("[kafka] stopping" + (f" {cluster.size} brokers" if cluster.size > 1 else ""))
            cluster.stop()
            # Whatever size this command thinks the stack has, no broker of this home keeps running.
            for f in sorted((self.home / "run").glob("kafka*.pid")):
                processes.stop(f, timeout=60)
            if wipe:
                cluster.wipe()
                self._cluster_file().unlink(missing_ok=True)
                self.progress(f"[kafka] data wiped ({', '.join(str(n.data_dir) for n in cluster.nodes)})")

    def restart(self, service: str, overrides: dict | None = None, instances: int = 1) -> None:
        """Restart one service, with environment overrides (e.g. THROTTLE_MS) and N instances."""
        if service == KAFKA or node_of(service):
            if self.external_bootstrap:
                raise StackError("KAFKA_BOOTSTRAP is set: the external cluster is not ours to restart")
            nodes = [self._node(service)] if node_of(service) else self.cluster.nodes
            for n in nodes:
                n.stop()
            self.cluster.start(progress=self.progress)
            return
        self._command(service)  # validates the name
        if instances > 1 and service != INVENTORY:
            raise StackError(f"--instances applies to {INVENTORY} only")
        self._stop_service(service)
        self._start(service, dict(overrides or {}), instances)
        self.wait_healthy(services=(service,))   # this one's health: another's refusal is not this restart's

    def kill(self, service: str, instance: int = 0) -> bool:
        """kill -9 one instance (the crash the reliability tests inflict)."""
        if service == KAFKA or node_of(service):
            node = self._node(service) if node_of(service) else self.cluster.nodes[instance]
            return processes.kill(node.pid_file)
        return processes.kill(self._pid_file(service, instance))

    def _check_size(self, wanted: int) -> None:
        """Refuse to start N brokers over data formatted for another size.

        A single broker's quorum is not a cluster's.
        """
        saved = Stack(home=self.home, kafka_port=self.kafka_port, controller_port=self.controller_port).broker_count
        formatted = [n for n in EmbeddedCluster(home=self.home, ports=((0, 0),) * max(saved, wanted)).nodes
                     if (n.data_dir / "meta.properties").exists()] if saved != wanted else []
        if formatted:
            raise StackError(f"{self.home} holds the data of a {saved}-broker stack, not {wanted}: "
                             f"./run_all.sh down --wipe first (or give this one another LAB_HOME)")

    def _check_security(self, wanted: bool) -> None:
        """Refuse to secure data formatted without SCRAM users (or to open up a secured one): wipe first."""
        formatted = any((n.data_dir / "meta.properties").exists() for n in self.cluster.nodes)
        was = bool(self._saved_shape().get("secure", False))
        if formatted and was != wanted:
            raise StackError(f"{self.home} holds the data of {'a secured' if was else 'an unsecured'} stack: "
                             f"./run_all.sh down --wipe first (or give this one another LAB_HOME)")

    def _node(self, name: str) -> EmbeddedBroker:
        n = node_of(name)
        if not n or n > self.broker_count:
            raise StackError(f"no broker {name!r}: this stack has {self.broker_count} "
                             f"({', '.join(b.name for b in self.cluster.nodes)})")
        return self.cluster.node(n)

    def start_instance(self, service: str, instance: int) -> None:
        """Start one instance again after a kill, with the service's current overrides."""
        s = self._settings(service)
        env = {**os.environ, "PYTHONPATH": str(paths.ROOT), "PYTHONUNBUFFERED": "1",
               **self._service_env(s["overrides"], principal=service), "INSTANCE_ID": str(instance)}
        processes.start(self._command(service), pid_file=self._pid_file(service, instance),
                        log_file=self.log_file(service, instance), env=env, cwd=paths.ROOT)


def node_of(service: str) -> int | None:
    """kafka-2 -> 2: one node of an embedded cluster (kafka-1 is node 1, plain kafka all of them)."""
    name, _, number = service.rpartition("-")
    return int(number) if name == KAFKA and number.isdigit() else None
