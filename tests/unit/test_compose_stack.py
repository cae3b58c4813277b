"""lab.compose.ComposeStack without Docker: what it refuses, what it makes of docker's answers, and its errors.

What it does with a real Docker Engine is tests/integration/test_compose.py's.
"""
from __future__ import annotations

import json
import os
import subprocess

import pytest

from lab import cli
from lab.compose import ComposeStack, host_variables, parse_ps, stack_from_env
from lab.stack import LabStack, Stack, StackError


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


@pytest.mark.parametrize("service,overrides,instances,message", [
    ("inventory-consumer", {"LOG_LEVEL": "DEBUG"}, 1,
     "takes only COMMIT_INTERVAL_MS, INITIAL_STOCK, PROCESSING_GUARANTEE, THROTTLE_MS"),
    ("analytics-consumer", {"THROTTLE_MS": "5"}, 1, "not THROTTLE_MS"),
    ("producer-order", {}, 2, "--instances applies to inventory-consumer only"),
    ("kafka", {"X": "1"}, 1, "kafka takes no overrides"),
    ("nope", {}, 1, "unknown service"),
])
def test_restart_refuses_what_compose_cannot_apply(stack, docker, service, overrides, instances, message):
    with pytest.raises(StackError, match=message):
        stack.restart(service, overrides, instances)
    assert docker.argvs == []


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
    with pytest.raises(StackError, match="Compose v2\\) is not installed: run scripts/install-docker.sh"):
        no_compose.status()
    no_daemon = ComposeStack(home=tmp_path, run=FakeDocker(fail=("info",)))
    with pytest.raises(StackError, match="^no Docker daemon answers: run scripts/install-docker.sh") as exc:
        no_daemon.up()
    assert "\n" not in str(exc.value)


def test_both_stacks_are_lab_stacks_and_hand_themselves_to_a_child_process(tmp_path):
    compose = ComposeStack(home=tmp_path, project="lab-test")
    assert isinstance(compose, LabStack) and isinstance(Stack(home=tmp_path), LabStack)
    env = {k: v for k, v in compose.child_environment().items() if v}
    seen = stack_from_env(env)
    assert isinstance(seen, ComposeStack) and (seen.home, seen.project_name) == (tmp_path, "lab-test")
    assert seen.container("inventory-consumer", 1) == "lab-test-inventory-consumer-2"
    assert ComposeStack(home=tmp_path).project_name == "kafka-lab"


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
    err = capsys.readouterr().err
    assert err.startswith("error: `docker compose` (Compose v2) is not installed: run scripts/install-docker.sh")
    assert err.count("\n") == 1
    assert os.environ["LAB_STACK"] == "compose"  # what notebooks started from here will see


def test_an_instance_is_found_by_compose_number_whatever_replica_survived_a_scale_down(tmp_path):
    # After 3 -> 1 Compose kept replica 3 (CI saw `-1` gone); a recreating container is renamed <id>_<name>.
    ps = "3 lab-test-inventory-consumer-3\n2 0123abcd_lab-test-inventory-consumer-2\n"
    s = ComposeStack(home=tmp_path, project="lab-test", run=FakeDocker(ps=ps), progress=lambda m: None)
    assert s.live_container("inventory-consumer") == "lab-test-inventory-consumer-3"
    assert s.live_container("inventory-consumer", 1) == "lab-test-inventory-consumer-2"
    argv = s.run.argvs[-1]
    assert "label=com.docker.compose.service=inventory-consumer" in argv and "--all" in argv
    s.kill("inventory-consumer")
    assert s.run.argvs[-1][-1] == "lab-test-inventory-consumer-3"


def test_compose_borrows_the_embedded_topic_step_which_needs_only_the_service_config(tmp_path, monkeypatch):
    # Stack.ensure_topics runs on a ComposeStack too (one topic step for both): a helper it calls on self
    # that ComposeStack lacks broke `--compose up` once. The admin client is a stand-in: what is under
    # test is the plumbing, not Kafka (tests/integration/test_compose.py creates the topics for real).
    from services.common import kafka_clients, topics
    seen = []

    class Admin:
        def close(self):
            seen.append("closed")

    monkeypatch.setattr(kafka_clients, "admin", lambda cfg, **kw: seen.append(cfg.bootstrap) or Admin())
    monkeypatch.setattr(topics, "ensure_topics", lambda admin, replication_factor: ["OrderEvents"])
    said = []
    ComposeStack(home=tmp_path, run=FakeDocker(), progress=said.append).ensure_topics()
    assert seen == ["127.0.0.1:9094", "closed"] and said == ["[kafka] created topics OrderEvents"]


def test_a_containers_healthcheck_becomes_the_argv_the_restart_runs_itself():
    from lab.compose_cli import healthcheck_argv
    assert healthcheck_argv(["CMD", "python", "-m", "services.inventory.health"]) == [
        "python", "-m", "services.inventory.health"]
    assert healthcheck_argv(["CMD-SHELL", "curl -f x || exit 1"]) == ["/bin/sh", "-c", "curl -f x || exit 1"]
    assert healthcheck_argv(None) == ["true"] and healthcheck_argv(["NONE"]) == ["true"]
