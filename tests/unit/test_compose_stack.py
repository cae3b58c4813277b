"""lab.compose.ComposeStack without Docker: the docker compose command lines it runs, and what it makes of the answers."""
from __future__ import annotations

import json
import os
import subprocess

import pytest

from lab import cli
from lab.compose import COMPOSE_FILE, ComposeStack, host_variables, parse_ps, stack_from_env
from lab.stack import Stack, StackError

COMPOSE = ["docker", "compose", "-f", str(COMPOSE_FILE)]


class FakeDocker:
    """Stands in for the docker CLI: keeps each command line with its environment, answers with canned output."""

    def __init__(self, ps: str = "", fail: tuple[str, ...] = ()):
        self.ps, self.fail = ps, fail
        self.commands: list[tuple[list[str], dict]] = []

    def __call__(self, argv, *, env, capture=False):
        self.commands.append((argv, env))
        failed = any(word in argv for word in self.fail)
        out = self.ps if "ps" in argv else ""
        return subprocess.CompletedProcess(argv, 1 if failed else 0, out, "boom\nmore" if failed else "")

    @property
    def argvs(self) -> list[list[str]]:
        # The one-time `docker compose version` check is left out.
        return [a for a, _ in self.commands if a[-1] != "version"]

    def env_of(self, i: int = -1) -> dict:
        return [e for a, e in self.commands if a[-1] != "version"][i]


@pytest.fixture
def docker():
    return FakeDocker()


@pytest.fixture
def stack(tmp_path, docker, monkeypatch):
    for var in ("THROTTLE_MS", "ANALYTICS_REBUILD", "KAFKA_BOOTSTRAP", "LAB_STACK"):
        monkeypatch.delenv(var, raising=False)
    s = ComposeStack(home=tmp_path, run=docker, progress=lambda msg: None)
    # No broker behind 127.0.0.1:9094 here; the topic check is the embedded stack's, tested there.
    monkeypatch.setattr(s, "ensure_topics", lambda: None)
    return s


def test_up_builds_waits_and_keeps_the_saved_scale_and_overrides(stack, docker):
    stack.up()
    assert docker.argvs[-1] == [*COMPOSE, "up", "--build", "--detach", "--wait", "--wait-timeout", "300",
                                "--scale", "inventory-consumer=1"]
    stack.restart("inventory-consumer", {"THROTTLE_MS": 100}, instances=3)
    stack.up()
    assert docker.argvs[-1][-2:] == ["--scale", "inventory-consumer=3"]
    assert docker.env_of()["THROTTLE_MS"] == "100"


@pytest.mark.parametrize("service,overrides,instances,scale", [
    ("inventory-consumer", {"THROTTLE_MS": "100"}, 3, ["--scale", "inventory-consumer=3"]),
    ("inventory-consumer", {}, 1, ["--scale", "inventory-consumer=1"]),
    ("analytics-consumer", {"ANALYTICS_REBUILD": "0"}, 1, []),
    ("producer-order", {}, 1, []),
])
def test_restart_recreates_one_service_with_its_variables(stack, docker, service, overrides, instances, scale):
    stack.restart(service, overrides, instances)
    assert docker.argvs == [[*COMPOSE, "up", "--detach", "--wait", "--wait-timeout", "300", "--no-deps",
                             "--force-recreate", *scale, service]]
    env = docker.env_of()
    for k, v in overrides.items():
        assert env[k] == v
    assert "THROTTLE_MS" not in env or "THROTTLE_MS" in overrides


def test_restart_without_overrides_drops_the_previous_ones(stack, docker):
    stack.restart("inventory-consumer", {"THROTTLE_MS": "100"}, 3)
    stack.restart("inventory-consumer", {}, 1)
    assert "THROTTLE_MS" not in docker.env_of()
    assert docker.argvs[-1][-3:] == ["--scale", "inventory-consumer=1", "inventory-consumer"]


@pytest.mark.parametrize("service,overrides,instances,message", [
    ("inventory-consumer", {"LOG_LEVEL": "DEBUG"}, 1, "takes only COMMIT_INTERVAL_MS, INITIAL_STOCK, THROTTLE_MS"),
    ("analytics-consumer", {"THROTTLE_MS": "5"}, 1, "not THROTTLE_MS"),
    ("producer-order", {}, 2, "--instances applies to inventory-consumer only"),
    ("kafka", {"X": "1"}, 1, "kafka takes no overrides"),
    ("nope", {}, 1, "unknown service"),
])
def test_restart_refuses_what_compose_cannot_apply(stack, docker, service, overrides, instances, message):
    with pytest.raises(StackError, match=message):
        stack.restart(service, overrides, instances)
    assert docker.argvs == []


def test_restart_kafka_restarts_the_container_and_waits_for_health(stack, docker):
    stack.restart("kafka")
    assert docker.argvs == [[*COMPOSE, "restart", "kafka"],
                            [*COMPOSE, "up", "--detach", "--wait", "--no-deps", "--no-recreate", "kafka"]]


@pytest.mark.parametrize("wipe,tail", [(False, []), (True, ["--volumes"])])
def test_down_stops_every_profile_too(stack, docker, wipe, tail):
    stack.down(wipe=wipe)
    assert docker.argvs == [[*COMPOSE, "--profile", "jupyter", "--profile", "monitoring",
                             "down", "--remove-orphans", *tail]]


def test_kill_and_start_address_one_replica_by_its_container_name(stack, docker):
    assert stack.kill("inventory-consumer", 1) is True
    stack.start_instance("inventory-consumer", 1)
    assert docker.argvs == [["docker", "kill", "--signal", "KILL", "kafka-lab-inventory-consumer-2"],
                            ["docker", "start", "kafka-lab-inventory-consumer-2"]]


PS_ROWS = [
    {"Name": "kafka-lab-kafka-1", "Service": "kafka", "State": "running", "Health": "healthy"},
    {"Name": "kafka-lab-init-topics-1", "Service": "init-topics", "State": "exited", "Health": ""},
    {"Name": "kafka-lab-producer-order-1", "Service": "producer-order", "State": "running", "Health": "healthy"},
    {"Name": "kafka-lab-inventory-consumer-1", "Service": "inventory-consumer", "State": "running",
     "Health": "healthy"},
    {"Name": "kafka-lab-inventory-consumer-2", "Service": "inventory-consumer", "State": "running",
     "Health": "starting"},
    {"Name": "kafka-lab-analytics-consumer-1", "Service": "analytics-consumer", "State": "exited", "Health": ""},
]


@pytest.mark.parametrize("ps", [json.dumps(PS_ROWS), "\n".join(json.dumps(r) for r in PS_ROWS)],
                         ids=["json-array", "json-lines"])
def test_status_reads_both_ps_formats(tmp_path, ps):
    s = ComposeStack(home=tmp_path, run=FakeDocker(ps=ps))
    st = s.status()
    assert list(st) == ["kafka", "producer-order", "inventory-consumer", "analytics-consumer"]
    assert st["kafka"]["running"] and st["kafka"]["address"] == "127.0.0.1:9094"
    assert st["inventory-consumer"]["instances"] == 2
    assert st["inventory-consumer"]["health"]["kafka-lab-inventory-consumer-2"] == "starting"
    assert st["producer-order"]["address"] == "http://127.0.0.1:7001"
    analytics = st["analytics-consumer"]
    assert (analytics["running"], analytics["instances"], analytics["containers"]) == (False, 0, [])
    assert parse_ps("") == []


def test_a_failing_docker_command_is_a_stack_error(tmp_path):
    s = ComposeStack(home=tmp_path, run=FakeDocker(fail=("up",)), progress=lambda m: None)
    with pytest.raises(StackError, match="failed \\(exit 1\\)"):
        s.up()
    no_compose = ComposeStack(home=tmp_path, run=FakeDocker(fail=("version",)))
    with pytest.raises(StackError, match="Compose v2\\) is not usable here.*drop --compose"):
        no_compose.status()


def test_addresses_from_the_host_and_from_inside_the_compose_network(tmp_path):
    host = ComposeStack(home=tmp_path)
    assert (host.bootstrap, host.producer_url, host.analytics_url) == \
        ("127.0.0.1:9094", "http://127.0.0.1:7001", "http://127.0.0.1:7002")
    assert host.service_config().bootstrap == "127.0.0.1:9094"
    inside = stack_from_env({"LAB_STACK": "compose-network", "KAFKA_BOOTSTRAP": "kafka:9092"})
    assert (inside.bootstrap, inside.producer_url, inside.analytics_url) == \
        ("kafka:9092", "http://producer-order:7001", "http://analytics-consumer:7002")
    with pytest.raises(StackError, match="no Docker"):
        inside.restart("inventory-consumer", {"THROTTLE_MS": "100"})


def test_the_environment_chooses_the_stack():
    assert isinstance(stack_from_env({"LAB_STACK": "compose"}), ComposeStack)
    assert isinstance(stack_from_env({}), Stack)
    with pytest.raises(StackError, match="KAFKA_BOOTSTRAP and --compose exclude each other"):
        stack_from_env({"LAB_STACK": "compose", "KAFKA_BOOTSTRAP": "broker:9092"})


def test_host_variables_are_each_services_own():
    compose = {"services": {
        "a": {"environment": {"X": "${X:-1}", "SHARED": "${SHARED:-}", "FIXED": "kafka:9092", "Y": "${Z:-0}"}},
        "b": {"environment": {"SHARED": "${SHARED:-}", "W": "${W}"}},
        "c": {},
    }}
    assert host_variables(compose) == {"a": {"X"}, "b": {"W"}, "c": set()}


@pytest.mark.parametrize("argv", [["--compose", "status"], ["status", "--compose", "--json"]])
def test_cli_compose_flag_anywhere_selects_compose(argv, monkeypatch, tmp_path, capsys):
    # No docker on PATH: the compose stack must be the one answering, with its own error.
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("LAB_HOME", str(tmp_path))
    monkeypatch.setenv("LAB_STACK", "embedded")
    monkeypatch.delenv("KAFKA_BOOTSTRAP", raising=False)
    assert cli.main(argv) == 1
    assert "'docker' not found" in capsys.readouterr().err
    assert os.environ["LAB_STACK"] == "compose"  # what notebooks started from here will see
