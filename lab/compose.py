"""Compose mode: the stack operations of lab.stack.Stack, carried out by `docker compose`.

`./run_all.sh --compose ...` uses it, and so do notebooks started under it (LAB_STACK=compose).
Host clients reach the broker on 127.0.0.1:9094 (its EXTERNAL listener) and the services on
their usual ports; inside the compose network (the jupyter service) they use service names.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from lab import paths, topology
from lab.compose_cli import healthcheck_argv, host_variables, parse_ps, run_command
from lab.stack import Stack, StackError
from lab.topology import ANALYTICS, APP_SERVICES, INVENTORY, KAFKA, PRODUCER, SERVICES
from services.common.config import masked

COMPOSE_FILE = paths.ROOT / "docker-compose.yml"


@dataclass
class ComposeStack:
    """The compose stack; settings (overrides, instances) persist under home like Stack's."""
    home: Path = paths.STATE_DIR
    compose_file: Path = COMPOSE_FILE
    in_network: bool = False      # running inside the compose network: addresses by service name
    env: dict = field(default_factory=dict)  # extra host environment for `docker compose`
    progress: object = print
    run: Callable[..., subprocess.CompletedProcess] = run_command
    producer_port: int = topology.HTTP_PORTS[PRODUCER]        # host ports: the compose file publishes
    analytics_port: int = topology.HTTP_PORTS[ANALYTICS]      # each service on the one its variable names
    kafka_external_port: int = topology.KAFKA_EXTERNAL_PORT
    external_bootstrap = None     # parity with Stack: compose always runs its own broker
    project: str | None = None    # compose project name; None: the compose file's own (kafka-lab)
    _compose_checked = False

    @classmethod
    def from_env(cls, environ=None, **kw) -> "ComposeStack":
        e = os.environ if environ is None else environ
        in_network = e.get("LAB_STACK") == "compose-network"
        if e.get("KAFKA_BOOTSTRAP") and not in_network:
            raise StackError("KAFKA_BOOTSTRAP and --compose exclude each other: compose runs its own broker "
                             "(unset KAFKA_BOOTSTRAP, or drop --compose to use that cluster)")
        return cls(home=Path(e.get("LAB_HOME", paths.STATE_DIR)), in_network=in_network,
                   project=e.get("COMPOSE_PROJECT_NAME") or None,
                   producer_port=int(e.get("PRODUCER_PORT") or topology.HTTP_PORTS[PRODUCER]),
                   analytics_port=int(e.get("ANALYTICS_PORT") or topology.HTTP_PORTS[ANALYTICS]),
                   kafka_external_port=int(e.get("KAFKA_EXTERNAL_PORT") or topology.KAFKA_EXTERNAL_PORT), **kw)

    # -- addresses -------------------------------------------------------------------------
    @property
    def bootstrap(self) -> str:
        if self.in_network:
            return f"{KAFKA}:{topology.KAFKA_PORT}"
        return f"127.0.0.1:{self.kafka_external_port}"

    @property
    def kind(self) -> str:
        return "compose"

    def describe(self) -> str:
        """One line for the report's versions section: where the broker runs."""
        return f"docker compose (project {self.project_name}), KRaft, at {self.bootstrap}"

    def child_environment(self) -> dict[str, str]:
        """What a child process (a notebook's kernel) needs for stack_from_env to find this very stack."""
        return {"LAB_STACK": "compose-network" if self.in_network else "compose",
                "LAB_HOME": str(self.home), "KAFKA_BOOTSTRAP": "",
                "COMPOSE_PROJECT_NAME": self.project or "", **self._ports()}

    def _url(self, service: str, port: int) -> str:
        # Inside the network the services listen on their fixed ports; the host sees the published ones.
        if self.in_network:
            return f"http://{service}:{topology.HTTP_PORTS[service]}"
        return f"http://127.0.0.1:{port}"

    @property
    def producer_url(self) -> str:
        return self._url(PRODUCER, self.producer_port)

    @property
    def analytics_url(self) -> str:
        return self._url(ANALYTICS, self.analytics_port)

    def _ports(self) -> dict[str, str]:
        return {"PRODUCER_PORT": str(self.producer_port), "ANALYTICS_PORT": str(self.analytics_port),
                "KAFKA_EXTERNAL_PORT": str(self.kafka_external_port)}

    def service_config(self):
        """A services Config pointing at this stack (for notebooks and tests that talk to Kafka)."""
        from services.common.config import Config
        return Config.from_env({**os.environ, "KAFKA_BOOTSTRAP": self.bootstrap, **self._ports()})

    # -- the compose file and our settings -------------------------------------------------
    @property
    def compose(self) -> dict:
        return yaml.safe_load(self.compose_file.read_text())

    @property
    def project_name(self) -> str:
        return self.project or self.compose["name"]

    def container(self, service: str, instance: int = 0) -> str:
        """Compose's name for a service's container: <project>-<service>-<n>, n from 1."""
        return f"{self.project_name}-{service}-{instance + 1}"

    def _settings_file(self) -> Path:
        return self.home / "compose" / "settings.json"

    def _settings(self) -> dict:
        try:
            saved = json.loads(self._settings_file().read_text())
        except FileNotFoundError:
            saved = {}
        return {s: saved.get(s, {"overrides": {}, "instances": 1}) for s in APP_SERVICES}

    def _save(self, service: str, overrides: dict, instances: int) -> None:
        settings = self._settings()
        settings[service] = {"overrides": overrides, "instances": instances}
        self._settings_file().parent.mkdir(parents=True, exist_ok=True)
        self._settings_file().write_text(json.dumps(settings, indent=2))

    def _check_variables(self, service: str, names) -> None:
        allowed = host_variables(self.compose).get(service, set())
        unknown = sorted(set(names) - allowed)
        if unknown:
            raise StackError(
                f"in compose mode {service} takes only {', '.join(sorted(allowed)) or 'no variables'} from "
                f"a restart, not {', '.join(unknown)}: add `VAR: ${{VAR:-default}}` to its environment "
                "in docker-compose.yml, or export shared ones before `up`")

    # -- running docker compose ------------------------------------------------------------
    def _environment(self) -> dict:
        # Every service's saved overrides at once: their variable names are disjoint
        # (host_variables), so each reaches only its own service.
        merged = {k: str(v) for s in self._settings().values() for k, v in s["overrides"].items()}
        # The jupyter service writes notebooks and reports/ into this checkout: as its owner.
        owner = {"LAB_UID": str(os.getuid()), "LAB_GID": str(os.getgid())} if hasattr(os, "getuid") else {}
        return {**owner, **os.environ, **self._ports(), **{k: str(v) for k, v in self.env.items()}, **merged}

    def _docker(self, *args: str, capture: bool = False, check: bool = True) -> subprocess.CompletedProcess:
        self._refuse_in_network(" ".join(args[:2]))
        argv = ["docker", *args]
        res = self.run(argv, env=self._environment(), capture=capture)
        if check and res.returncode != 0:
            detail = (res.stderr or "").strip()[-2000:] if capture else "see the output above"
            raise StackError(f"`{' '.join(argv)}` failed (exit {res.returncode}): {detail}")
        return res

    def _compose(self, *args: str, capture: bool = False) -> subprocess.CompletedProcess:
        if not self._compose_checked:
            self.require_docker()
        return self._docker("compose", "-p", self.project_name, "-f", str(self.compose_file), *args,
                            capture=capture)

    def _refuse_in_network(self, what: str) -> None:
        if self.in_network:
            raise StackError(
                f"`docker {what}` cannot run inside the compose network (the jupyter service has no Docker): "
                "the experiments that restart services (notebook 02, the drift demo of 03) need "
                "./run_all.sh --compose lab (JupyterLab on the host) or ./run_all.sh --compose")

    def require_docker(self) -> None:
        """A reachable Docker daemon and Compose v2, or one line that says what to install."""
        if self._compose_checked or self.in_network:
            return  # inside the network _docker refuses every command with its own message
        hint = ("run scripts/install-docker.sh (Debian/Ubuntu: Docker Engine, dockerd, Compose v2), "
                "or drop --compose to run the embedded stack")
        try:
            self._docker("compose", "version", capture=True)
        except StackError:
            raise StackError(f"`docker compose` (Compose v2) is not installed: {hint}") from None
        try:
            self._docker("info", "--format", "{{.ServerVersion}}", capture=True)
        except StackError:
            raise StackError(f"no Docker daemon answers: {hint}") from None
        self._compose_checked = True

    def build(self) -> None:
        """Build every image the compose file builds itself (the services' and jupyter's)."""
        self.progress(f"[compose] build: the services' images ({self.compose_file.name})")
        profiles = sorted({p for svc in self.compose["services"].values() for p in svc.get("profiles", ())})
        self.require_docker()
        res = self._docker("compose", "-p", self.project_name, "-f", str(self.compose_file),
                           *[a for p in profiles for a in ("--profile", p)], "--progress", "plain", "build",
                           capture=True, check=False)
        if res.returncode != 0:
            out = (res.stdout + res.stderr).splitlines()
            steps = [ln for ln in out if re.match(r"^#\d+ \[", ln)]
            raise StackError(f"building the services' images failed at: {steps[-1] if steps else '(no step started)'}\n"
                             + "\n".join(out[-25:]))

    def _scale(self) -> list[str]:
        # Always explicit: `up` without --scale would shrink inventory-consumer back to one replica.
        return ["--scale", f"{INVENTORY}={self._settings()[INVENTORY]['instances']}"]

    # -- operations ------------------------------------------------------------------------
    def up(self) -> None:
        """Build the images, start whatever is not running and wait until healthy. Idempotent."""
        self.progress(f"[compose] up: kafka, init-topics and the services (project {self.project_name})")
        self.build()
        try:
            self._compose("--progress", "quiet", "up", "--detach", "--wait", "--wait-timeout", "300",
                          *self._scale(), capture=True)
        except StackError as exc:
            raise StackError(f"{exc}\n{self.unhealthy_report()}") from None
        self.ensure_topics()

    def unhealthy_report(self, lines: int = 30) -> str:
        """The state of every container, and the log tail of each one that is not healthy (the broker's first)."""
        try:
            rows = parse_ps(self._compose("ps", "--all", "--format", "json", capture=True).stdout)
        except StackError as exc:
            return f"(could not list the containers: {exc})"
        out = ["containers: " + ", ".join(f"{r.get('Name')} {r.get('Health') or r.get('State')}" for r in rows)]
        bad = [r for r in rows if r.get("Service") != "init-topics" and (r.get("Health") or r.get("State")) != "healthy"
               or r.get("Service") == "init-topics" and r.get("ExitCode", 0) != 0]
        for r in sorted(bad, key=lambda r: r.get("Service") != KAFKA):
            logs = self.run(["docker", "logs", "--tail", str(lines), r["Name"]], env=self._environment(), capture=True)
            out.append(f"--- last {lines} lines of {r['Name']} ---\n{(logs.stdout + logs.stderr).strip()}")
        return "\n".join(out)

    def ensure_topics(self) -> None:
        """Check the topics init-topics created against services/common/topics.py (creating any missing)."""
        Stack.ensure_topics(self)  # the embedded stack's very step, against this stack's bootstrap

    def down(self, wipe: bool = False) -> None:
        """Stop and remove every container (optional profiles too); with wipe, the broker's volume as well."""
        profiles = sorted({p for svc in self.compose["services"].values() for p in svc.get("profiles", ())})
        every = [a for p in profiles for a in ("--profile", p)]
        # The Kafka images declare VOLUME /var/lib/kafka/data (apache/kafka declares more), so a
        # container that does not mount kafka-data there, init-topics, gets an anonymous volume,
        # and a plain `down` left one behind per up. `rm --volumes` takes a container's anonymous
        # volumes with it and keeps the named ones; `stop` first stops in dependency order.
        self._compose(*every, "--progress", "quiet", "stop", capture=True)
        self._compose(*every, "--progress", "quiet", "rm", "--force", "--volumes", capture=True)
        self._compose(*every, "--progress", "quiet",
                      "down", "--remove-orphans", *(["--volumes"] if wipe else []), capture=True)
        self.progress(f"[compose] down{' (broker data deleted)' if wipe else ''}")

    def restart(self, service: str, overrides: dict | None = None, instances: int = 1) -> None:
        """Recreate one service with host-variable overrides (THROTTLE_MS) and N replicas."""
        overrides = {k: str(v) for k, v in (overrides or {}).items()}
        if service not in SERVICES:
            raise StackError(f"unknown service {service!r}; one of {', '.join(SERVICES)}")
        if service == KAFKA:
            if overrides or instances != 1:
                raise StackError("kafka takes no overrides or instances")
            self._compose("--progress", "quiet", "restart", KAFKA, capture=True)
            self._compose("--progress", "quiet", "up", "--detach", "--wait", "--no-deps", "--no-recreate", KAFKA,
                          capture=True)
            return
        if instances > 1 and service != INVENTORY:
            raise StackError(f"--instances applies to {INVENTORY} only")
        self._check_variables(service, overrides)
        self._refuse_in_network(f"compose restart {service}")
        self._save(service, overrides, instances)
        self._compose("--progress", "quiet", "up", "--detach", "--no-deps", "--force-recreate",
                      *(self._scale() if service == INVENTORY else []), service, capture=True)
        self._wait_ready(service, instances)
        extra = " ".join(f"{k}={v}" for k, v in masked(overrides).items())
        self.progress(f"[{service}] recreated{f' x{instances}' if instances > 1 else ''}"
                      f"{f' with {extra}' if extra else ''}")

    def _wait_ready(self, service: str, instances: int, timeout: float = 300.0) -> None:
        """Until each container of service passes its own healthcheck, run here every 0.2 s. `up --wait`
        waited for Docker's first check, an interval (5 s) after the start (Docker 20.10 has no
        start_interval): a recreate took 8.5 s where the service was ready in 2.5."""
        deadline, ready, stopped, tests = time.monotonic() + timeout, set(), {}, {}
        while True:
            res = self._docker("ps", "--all", "--filter", f"label=com.docker.compose.project={self.project_name}",
                               "--filter", f"label=com.docker.compose.service={service}",
                               "--format", "{{.Names}} {{.State}}", capture=True)
            states = dict(line.split(" ", 1) for line in res.stdout.splitlines() if " " in line)
            prefix = f"{self.project_name}-{service}-"
            names = [n for n, st in states.items() if n.startswith(prefix) and st == "running"]
            # Exited twice in a row, not restarting: the restart policy gave up (or there is none).
            stopped = {n: stopped.get(n, 0) + 1 for n, st in states.items() if st in ("exited", "dead")}
            if any(count >= 2 for count in stopped.values()):
                raise StackError(f"{service} stopped while starting\n{self.unhealthy_report()}")
            for name in set(names) - ready:
                if name not in tests:  # a container's healthcheck does not change: inspect it once
                    test = self._docker("inspect", "--format", "{{json .Config.Healthcheck.Test}}", name, capture=True)
                    tests[name] = healthcheck_argv(json.loads(test.stdout or "null"))
                try:
                    if self.run(["docker", "exec", name, *tests[name]], env=self._environment(),
                                capture=True, timeout=20).returncode == 0:
                        ready.add(name)
                except subprocess.TimeoutExpired:
                    pass
            if len(ready & set(names)) >= instances:
                return
            if time.monotonic() > deadline:
                raise StackError(f"{service} did not become healthy within {timeout:.0f} s\n{self.unhealthy_report()}")
            time.sleep(0.2)

    def live_container(self, service: str, instance: int = 0) -> str:
        """The name of a service's instance-th container as Docker has it now. After a scale-down Compose may
        keep replica 2 or 3 rather than 1 (CI saw `-1` gone after 3 -> 1), so names are looked up, in the
        order of Compose's container numbers, stopped containers included; the computed name otherwise."""
        res = self._docker("ps", "--all", "--filter", f"label=com.docker.compose.project={self.project_name}",
                           "--filter", f"label=com.docker.compose.service={service}", "--format",
                           '{{.Label "com.docker.compose.container-number"}} {{.Names}}', capture=True, check=False)
        rows = []
        for line in (res.stdout or "").splitlines() if res.returncode == 0 else ():
            number, _, name = line.strip().partition(" ")
            # A container being recreated is renamed <id>_<name> for a moment: not one to act on.
            if number.isdigit() and name.startswith(f"{self.project_name}-{service}-"):
                rows.append((int(number), name))
        names = [name for _, name in sorted(rows)]
        return names[instance] if instance < len(names) else self.container(service, instance)

    def kill(self, service: str, instance: int = 0) -> bool:
        """SIGKILL one container; Docker does not restart what `docker kill` stopped."""
        return self.run(["docker", "kill", "--signal", "KILL", self.live_container(service, instance)],
                        env=self._environment(), capture=True).returncode == 0

    def crash(self, service: str, instance: int = 0) -> int:
        """kill -9 the container's main process from the host, as a crash would; its restart policy
        (on-failure) brings it back, which a `docker kill` never does. Returns the killed host pid."""
        name = self.live_container(service, instance)
        pid = int(self._docker("inspect", "--format", "{{.State.Pid}}", name, capture=True).stdout.strip() or 0)
        if pid <= 0:
            raise StackError(f"{name} is not running")
        os.kill(pid, signal.SIGKILL)
        return pid

    def restart_count(self, service: str, instance: int = 0) -> int:
        """How often Docker's restart policy has restarted this container."""
        return int(self._docker("inspect", "--format", "{{.RestartCount}}", self.live_container(service, instance),
                                capture=True).stdout.strip())

    def start_instance(self, service: str, instance: int) -> None:
        """Start a killed container again, same container and so the same INSTANCE_ID (hostname)."""
        self._docker("start", self.live_container(service, instance))

    def logs(self, service: str, n: int = 60) -> None:
        """Print the last n lines of every container of service."""
        self._compose("logs", "--no-color", "--tail", str(n), service)

    def status(self) -> dict:
        """For each service: running or not, containers, health, address, overrides."""
        rows = parse_ps(self._compose("ps", "--all", "--format", "json", capture=True).stdout)
        settings = self._settings()
        out = {}
        for service in SERVICES:
            mine = [r for r in rows if r.get("Service") == service]
            running = [r for r in mine if r.get("State") == "running"]
            row = {"running": bool(running), "pids": [], "containers": [r["Name"] for r in running],
                   "health": {r["Name"]: r.get("Health") or r.get("State") for r in mine}}
            if service == KAFKA:
                row["address"] = self.bootstrap
                row["external"] = False
            else:
                row["address"] = {PRODUCER: self.producer_url, ANALYTICS: self.analytics_url}.get(service)
                row["instances"] = len(running)
                row["overrides"] = masked(settings[service]["overrides"])
            out[service] = row
        return out


def stack_from_env(environ=None, **kw):
    """The stack LAB_STACK names (set by ./run_all.sh --compose, or the jupyter service), else the embedded one."""
    e = os.environ if environ is None else environ
    if e.get("LAB_STACK") in ("compose", "compose-network"):
        return ComposeStack.from_env(e, **kw)
    return Stack.from_env(e, **kw)
