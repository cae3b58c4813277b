"""The embedded Apache Kafka broker: jars from Maven Central, KRaft storage, one JVM process."""
from __future__ import annotations

import base64
import logging
import shutil
import subprocess
import sys
import time
import uuid
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from lab import paths, processes
from lab.security import ADMIN, PRINCIPALS, SecureHome, write_private

log = logging.getLogger(__name__)


class PrerequisiteError(RuntimeError):
    """A tool the embedded broker needs is not installed."""


class BrokerStartError(RuntimeError):
    """The broker did not answer in time; the message carries its log tail."""


def kafka_version(pom: Path = paths.POM) -> str:
    """The pinned Kafka version: the one place it lives is kafka/pom.xml."""
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    return ET.parse(pom).getroot().find("m:properties/m:kafka.version", ns).text.strip()


def require(tool: str, install_hint: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise PrerequisiteError(f"'{tool}' not found: install {install_hint}")
    return path


def ensure_jars(jars_dir: Path = paths.JARS_DIR, progress=print) -> Path:
    """Resolve the broker's jars once with Maven; later starts use the cache, offline."""
    version = kafka_version()
    stamp = jars_dir / f".complete-{version}"
    if stamp.exists():
        return jars_dir
    mvn = require("mvn", "Maven (Debian: apt-get install maven)")
    require("java", "a Java 17+ runtime (Debian: apt-get install openjdk-17-jre-headless)")
    progress(f"[kafka] resolving Apache Kafka {version} jars from Maven Central (first run only)...")
    if jars_dir.exists():
        shutil.rmtree(jars_dir)
    jars_dir.mkdir(parents=True)
    cmd = [mvn, "-B", "-q", "-f", str(paths.POM), "dependency:copy-dependencies",
           f"-DoutputDirectory={jars_dir}", "-DincludeScope=runtime"]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise PrerequisiteError(f"Maven could not resolve the Kafka jars:\n{res.stdout[-3000:]}{res.stderr[-2000:]}")
    n = len(list(jars_dir.glob("*.jar")))
    stamp.write_text(version)
    progress(f"[kafka] {n} jars cached in {jars_dir}")
    return jars_dir


def _cluster_id() -> str:
    # Kafka's Uuid text form: url-safe base64 of 16 random bytes, no padding. It may start
    # with "-", which is why it is passed as --cluster-id=ID and never as a separate argument.
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


@dataclass
class EmbeddedBroker:
    """One combined broker+controller (KRaft) whose data lives under home.

    Alone (voters None) it is node 1 with a dynamic quorum of itself. In an EmbeddedCluster
    every node knows the static voters, and the internal topics get `replication` replicas.
    """
    home: Path = paths.STATE_DIR
    port: int = 9092
    controller_port: int = 9093
    heap: str = "512m"
    node_id: int = 1
    voters: str | None = None      # controller.quorum.voters of a cluster: "1@127.0.0.1:9093,2@..."
    replication: int = 1           # replicas of the internal topics, and the cluster's default
    secure: "SecureHome | None" = None   # ./run_all.sh up --secure: SASL_SSL, mTLS controllers, ACLs

    @property
    def name(self) -> str:
        """kafka (a single broker, and node 1 of a cluster, keep the files they always had), kafka-2, kafka-3."""
        return "kafka" if self.node_id == 1 else f"kafka-{self.node_id}"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def data_dir(self) -> Path:
        return self.home / ("kafka-data" if self.node_id == 1 else f"kafka-data-{self.node_id}")

    @property
    def log_file(self) -> Path:
        return self.home / "logs" / f"{self.name}.log"

    @property
    def pid_file(self) -> Path:
        return self.home / "run" / f"{self.name}.pid"

    @property
    def properties_file(self) -> Path:
        return self.home / "kafka" / ("server.properties" if self.node_id == 1 else f"server-{self.node_id}.properties")

    def server_properties(self) -> str:
        rf = self.replication
        # With three replicas a write is acknowledged (acks=all) once two have it: one broker
        # may fail without losing an acknowledged event or stopping the writes.
        min_isr = 2 if rf >= 3 else 1
        quorum = (f"controller.quorum.voters={self.voters}" if self.voters
                  else f"controller.quorum.bootstrap.servers=127.0.0.1:{self.controller_port}")
        listeners = self.secure.broker_properties(self.port, self.controller_port) if self.secure else [
            f"listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        ]
        return "\n".join([
            "# Generated by lab/broker.py; edit that file, not this one.",
            "process.roles=broker,controller",
            f"node.id={self.node_id}",
            *listeners,
            quorum,
            f"log.dirs={self.data_dir}",
            # Internal topics: one replica and an ISR of one on a single broker; three and two in a cluster.
            f"offsets.topic.replication.factor={rf}",
            "offsets.topic.num.partitions=5",
            f"transaction.state.log.replication.factor={rf}",
            f"transaction.state.log.min.isr={min_isr}",
            "transaction.state.log.num.partitions=5",
            f"share.coordinator.state.topic.replication.factor={rf}",
            f"share.coordinator.state.topic.min.isr={min_isr}",
            f"default.replication.factor={rf}",
            f"min.insync.replicas={min_isr}",
            # Groups form at once instead of waiting 3 s for more members.
            "group.initial.rebalance.delay.ms=0",
            # Topics come only from services/common/topics.py, never from a typo.
            "auto.create.topics.enable=false",
            "num.partitions=3",
            "",
        ])

    def running_pid(self) -> int | None:
        return processes.running_pid(self.pid_file)

    def client_options(self) -> dict:
        """kafka-python options that reach this node: none, or SASL_SSL as the lab's admin."""
        return self.secure.connection(ADMIN).client_options() if self.secure else {}

    def format_storage(self, jars: Path, cluster_id: str | None = None) -> None:
        """Format KRaft storage once; an existing data folder is kept (topics and offsets survive)."""
        if (self.data_dir / "meta.properties").exists():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # A single node bootstraps a dynamic quorum of itself; cluster nodes share static voters.
        quorum = [] if self.voters else ["--standalone"]
        # A secured broker's SCRAM users go into the storage's first metadata (KRaft has no
        # other place to keep them before the broker serves anyone).
        users = self.secure.scram_format_args() if self.secure else []
        res = subprocess.run(
            ["java", "-cp", f"{jars}/*", *self._log_props(), "kafka.tools.StorageTool", "format",
             *quorum, *users, f"--cluster-id={cluster_id or _cluster_id()}", "-c", str(self.properties_file)],
            capture_output=True, text=True,
        )
        if res.returncode != 0:
            out = res.stdout + res.stderr
            if self.secure:   # the command line holds the passwords; Kafka may echo it
                for principal in PRINCIPALS:
                    out = out.replace(self.secure.password(principal), "***")
            raise BrokerStartError(f"kafka storage format failed:\n{out}")

    def _log_props(self) -> list[str]:
        return [f"-Dlog4j2.configurationFile={paths.KAFKA_DIR / 'log4j2.properties'}",
                f"-Dkafka.logs.file={self.log_file}"]

    def prepare(self, jars: Path, cluster_id: str | None = None) -> None:
        """Write the properties and format the storage (first start only)."""
        self.properties_file.parent.mkdir(parents=True, exist_ok=True)
        if self.secure:
            self.secure.ensure()
        # 0600: a secured node's properties hold the admin password its replication logs in with.
        write_private(self.properties_file, self.server_properties())
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self.format_storage(jars, cluster_id)

    def launch(self, jars: Path) -> None:
        """Start the JVM without waiting for it (a cluster's nodes wait for each other's votes)."""
        cmd = ["java", f"-Xmx{self.heap}", f"-Xms{self.heap}", "-XX:+UseG1GC",
               "-Djava.awt.headless=true", *self._log_props(),
               "-cp", f"{jars}/*", "kafka.Kafka", str(self.properties_file)]
        processes.start(cmd, pid_file=self.pid_file, log_file=self.log_file.with_suffix(".out"))

    def start(self, timeout: float = 90.0, progress=print) -> None:
        """Start the broker unless it runs already, and wait until it answers metadata."""
        if self.running_pid() is not None:
            return
        require("java", "a Java 17+ runtime (Debian: apt-get install openjdk-17-jre-headless)")
        jars = ensure_jars(progress=progress)
        self.prepare(jars)
        progress(f"[kafka] starting Apache Kafka {kafka_version()} (KRaft) on {self.bootstrap}")
        self.launch(jars)
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 90.0) -> None:
        """Block until the broker answers a metadata request, or raise with its log tail."""
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self.running_pid() is None:
                break
            try:
                if broker_answers(self.bootstrap, self.client_options()):
                    return
            except Exception as exc:  # not up yet: keep waiting until the deadline
                last_error = exc
            time.sleep(0.5)
        state = "exited" if self.running_pid() is None else f"did not answer within {timeout:.0f}s"
        raise BrokerStartError(
            f"Kafka broker {self.name} {state} ({last_error or 'no answer'}). Last lines of {self.log_file}:\n"
            + processes.tail(self.log_file, 25) + "\n" + processes.tail(self.log_file.with_suffix(".out"), 15)
            + _first_errors(self.log_file)
        )

    def stop(self) -> bool:
        return processes.stop(self.pid_file, timeout=60)

    def wipe(self) -> None:
        """Delete the broker's data (topics, offsets); the broker must be stopped."""
        if self.running_pid() is not None:
            raise RuntimeError("stop the broker before wiping its data")
        shutil.rmtree(self.data_dir, ignore_errors=True)


def node_ports(kafka_port: int, controller_port: int, node_id: int) -> tuple[int, int]:
    """Node n of an embedded cluster listens 10 ports above node n-1: 9092/9093, 9102/9103, 9112/9113."""
    return kafka_port + 10 * (node_id - 1), controller_port + 10 * (node_id - 1)


@dataclass
class EmbeddedCluster:
    """One broker, or N combined broker+controller nodes with static voters, all under one home."""
    home: Path = paths.STATE_DIR
    ports: tuple[tuple[int, int], ...] = ((9092, 9093),)   # (client, controller) per node
    heap: str = "512m"
    secure: bool = False

    @property
    def size(self) -> int:
        return len(self.ports)

    @property
    def nodes(self) -> list[EmbeddedBroker]:
        secure = SecureHome(self.home) if self.secure else None
        if self.size == 1:
            (port, controller), = self.ports
            return [EmbeddedBroker(home=self.home, port=port, controller_port=controller, heap=self.heap,
                                   secure=secure)]
        voters = ",".join(f"{i}@127.0.0.1:{c}" for i, (_, c) in enumerate(self.ports, 1))
        rf = min(3, self.size)
        return [EmbeddedBroker(home=self.home, port=p, controller_port=c, heap=self.heap, node_id=i,
                               voters=voters, replication=rf, secure=secure) for i, (p, c) in enumerate(self.ports, 1)]

    def node(self, node_id: int) -> EmbeddedBroker:
        return self.nodes[node_id - 1]

    @property
    def bootstrap(self) -> str:
        return ",".join(n.bootstrap for n in self.nodes)

    @property
    def replication(self) -> int:
        return self.nodes[0].replication

    @property
    def log_file(self) -> Path:
        return self.nodes[0].log_file

    @property
    def data_dir(self) -> Path:
        return self.nodes[0].data_dir

    def running_pids(self) -> list[int]:
        return [pid for pid in (n.running_pid() for n in self.nodes) if pid]

    def running_pid(self) -> int | None:
        """The first node's pid (a single broker's only one): what callers of the single broker read."""
        return self.nodes[0].running_pid()

    def start(self, timeout: float = 90.0, progress=print) -> None:
        """Start every node that is not running, then wait until each answers."""
        if self.size == 1:
            return self.nodes[0].start(timeout, progress)
        require("java", "a Java 17+ runtime (Debian: apt-get install openjdk-17-jre-headless)")
        jars = ensure_jars(progress=progress)
        stopped = [n for n in self.nodes if n.running_pid() is None]
        if not stopped:
            return
        # One cluster id for all nodes; kept in node 1's data once formatted.
        cluster_id = self._cluster_id() or _cluster_id()
        for n in self.nodes:
            n.prepare(jars, cluster_id)
        progress(f"[kafka] starting a {self.size}-node Apache Kafka {kafka_version()} cluster (KRaft, "
                 f"static voters) on {self.bootstrap}")
        for n in stopped:
            n.launch(jars)
        for n in stopped:
            n.wait_ready(timeout)

    def _cluster_id(self) -> str | None:
        for n in self.nodes:
            meta = n.data_dir / "meta.properties"
            if meta.exists():
                for line in meta.read_text().splitlines():
                    if line.startswith("cluster.id="):
                        return line.split("=", 1)[1].strip()
        return None

    def stop(self) -> bool:
        # All nodes at once: stopped one by one, the last ones lose their quorum and wait out
        # their controlled shutdown (a minute for three nodes); together they stop in seconds.
        if len(self.nodes) == 1:
            return self.nodes[0].stop()
        with ThreadPoolExecutor(len(self.nodes)) as pool:
            return all(list(pool.map(lambda n: n.stop(), self.nodes)))

    def wipe(self) -> None:
        for n in self.nodes:
            n.wipe()


def _first_errors(log_file: Path, n: int = 6) -> str:
    """The first ERROR lines and their 'Caused by', which a shutdown's tail of INFO lines buries."""
    try:
        lines = log_file.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return ""
    picked = [ln for ln in lines if " ERROR " in ln or " FATAL " in ln or ln.startswith("Caused by:")][:n]
    return ("\nFirst errors in the log:\n" + "\n".join(picked)) if picked else ""


def broker_answers(bootstrap: str, options: dict | None = None, timeout_ms: int = 2000) -> bool:
    """True when a broker at bootstrap answers a metadata request (options: how to connect, e.g. SASL_SSL)."""
    from kafka import KafkaAdminClient

    from services.common.kafka_clients import build_client

    # build_client: a constructor that cannot connect (the broker still starting) must not leave
    # its I/O thread behind, one per poll of wait_ready.
    admin = build_client(KafkaAdminClient, bootstrap_servers=bootstrap, request_timeout_ms=timeout_ms,
                         bootstrap_timeout_ms=timeout_ms, client_id="lab-readiness", **(options or {}))
    try:
        admin.list_topics()
        return True
    finally:
        admin.close()


if __name__ == "__main__":  # python -m lab.broker: resolve the jars only (used by CI's cache warm-up)
    try:
        ensure_jars()
    except PrerequisiteError as exc:
        sys.exit(str(exc))
