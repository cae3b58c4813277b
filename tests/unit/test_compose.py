"""docker-compose.yml, services/Dockerfile and monitoring/prometheus.yml agree with the code's single definitions.

No Docker needed: the files are parsed and compared with topics.py, config.py, lab/topology.py and kafka/pom.xml.
"""
from __future__ import annotations

import importlib
import importlib.util
import re
import socket

import pytest
import yaml

from lab import paths, topology
from lab.broker import kafka_version
from lab.compose import COMPOSE_FILE, ComposeStack, host_variables, stack_from_env
from lab.topology import ANALYTICS, APP_SERVICES, INVENTORY, KAFKA, PRODUCER, SERVICES
from services.common.config import ENV_DEFAULTS, Config
from services.common.prometheus import PATH as PROMETHEUS_PATH
from services.common.topics import TOPICS
from services.inventory.worker import InventoryWorker

COMPOSE = yaml.safe_load(COMPOSE_FILE.read_text())
SVC = COMPOSE["services"]
DOCKERFILE = (paths.ROOT / "services" / "Dockerfile").read_text()
HTTP = {PRODUCER: ("PRODUCER_HOST", "PRODUCER_PORT"), ANALYTICS: ("ANALYTICS_HOST", "ANALYTICS_PORT")}
FROM_HOST = re.compile(r"^\$\{(\w+):-(.*)\}$")


def option(line: str, name: str) -> str:
    m = re.search(rf"{name}[ =](\S+)", line)
    assert m, f"{name} missing in: {line}"
    return m.group(1)


def published(service: str) -> list[tuple[str, int, int]]:
    """(host ip, host port, container port) of each published port."""
    out = []
    for p in SVC[service].get("ports", []):
        ip, host, container = p.split(":")
        out.append((ip, int(host), int(container)))
    return out


def test_services_are_the_stacks_plus_init_and_optional_profiles():
    assert set(SVC) == {*SERVICES, "init-topics", "jupyter", "prometheus"}
    assert SVC["jupyter"]["profiles"] == ["jupyter"] and SVC["prometheus"]["profiles"] == ["monitoring"]
    assert all("profiles" not in SVC[s] for s in (*SERVICES, "init-topics"))


def test_kafka_image_is_the_embedded_brokers_version_and_every_image_is_pinned():
    assert SVC[KAFKA]["image"] == SVC["init-topics"]["image"] == f"apache/kafka:{kafka_version()}"
    for name, svc in SVC.items():
        tag = svc["image"].rpartition(":")[2]
        assert tag and tag != "latest" and "/" not in tag, f"{name}: unpinned image {svc['image']}"


def test_init_topics_creates_exactly_the_topic_definitions():
    script = SVC["init-topics"]["command"][0]
    creates = [line for line in script.splitlines() if "--create" in line]
    got = {(option(l, "--topic"), int(option(l, "--partitions")), int(option(l, "--replication-factor")),
            frozenset(re.findall(r"--config[ =](\S+)", l))) for l in creates}
    want = {(t.name, t.partitions, t.replication_factor, frozenset(f"{k}={v}" for k, v in t.configs.items()))
            for t in TOPICS}
    assert got == want and len(creates) == len(TOPICS)
    assert all("--if-not-exists" in l for l in creates)
    assert f"--bootstrap-server {KAFKA}:{topology.KAFKA_PORT}" in script
    # It waits for the broker: compose's health condition, and its own loop before the first --create.
    assert SVC["init-topics"]["depends_on"][KAFKA]["condition"] == "service_healthy"
    assert script.index("until topics --list") < script.index("--create")
    assert SVC["init-topics"]["restart"] == "no"


def test_broker_listeners_ports_and_single_node_settings():
    env = SVC[KAFKA]["environment"]
    internal, external = f"{KAFKA}:{topology.KAFKA_PORT}", f"127.0.0.1:{topology.KAFKA_EXTERNAL_PORT}"
    assert env["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://{internal},EXTERNAL://{external}"
    assert set(env["KAFKA_LISTENERS"].split(",")) == {
        f"PLAINTEXT://:{topology.KAFKA_PORT}", f"CONTROLLER://:{topology.KAFKA_CONTROLLER_PORT}",
        f"EXTERNAL://:{topology.KAFKA_EXTERNAL_PORT}"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"1@{KAFKA}:{topology.KAFKA_CONTROLLER_PORT}"
    assert published(KAFKA) == [("127.0.0.1", topology.KAFKA_EXTERNAL_PORT, topology.KAFKA_EXTERNAL_PORT)]
    assert ComposeStack().bootstrap == external
    for key in ("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
                "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "KAFKA_MIN_INSYNC_REPLICAS"):
        assert env[key] == 1, key
    assert env["KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS"] == 0
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "test" in SVC[KAFKA]["healthcheck"]
    volume = SVC[KAFKA]["volumes"][0].split(":")
    assert volume == [next(iter(COMPOSE["volumes"])), env["KAFKA_LOG_DIRS"]]


def test_every_published_port_is_on_loopback():
    for name in SVC:
        for ip, _, _ in published(name):
            assert ip == "127.0.0.1", name


@pytest.mark.parametrize("service", APP_SERVICES)
def test_app_services_use_only_config_variables_with_its_defaults(service):
    env = SVC[service]["environment"]
    assert set(env) <= set(ENV_DEFAULTS), set(env) - set(ENV_DEFAULTS)
    assert env["KAFKA_BOOTSTRAP"] == f"{KAFKA}:{topology.KAFKA_PORT}"
    for name, value in env.items():
        m = FROM_HOST.match(str(value))
        if m:
            assert m.groups() == (name, ENV_DEFAULTS[name]), f"{service}: {name}: {value}"


def test_the_experiments_variables_reach_their_service():
    assert SVC[INVENTORY]["environment"]["THROTTLE_MS"] == "${THROTTLE_MS:-0}"
    assert {"THROTTLE_MS"} <= host_variables(COMPOSE)[INVENTORY]
    assert {"ANALYTICS_REBUILD"} <= host_variables(COMPOSE)[ANALYTICS]


@pytest.mark.parametrize("service", APP_SERVICES)
def test_app_services_run_the_embedded_entry_points_from_one_image(service):
    svc = SVC[service]
    assert svc["build"] == {"context": ".", "dockerfile": "services/Dockerfile"}
    assert svc["image"] == SVC[PRODUCER]["image"]
    assert svc["depends_on"] == {"init-topics": {"condition": "service_completed_successfully"}}
    if service in HTTP:
        host_var, port_var = HTTP[service]
        host, port = svc["environment"][host_var], int(svc["environment"][port_var])
        assert (host, port) == ("0.0.0.0", topology.HTTP_PORTS[service])
        assert svc["command"] == topology.command(service, host=host, port=port)
        assert published(service) == [("127.0.0.1", port, port)]
        assert f"http://127.0.0.1:{port}/healthz" in " ".join(svc["healthcheck"]["test"])
    else:
        assert svc["command"] == topology.command(service, host="0.0.0.0")
        assert "ports" not in svc  # scaled out with --scale: no fixed host port
        assert svc["healthcheck"]["test"] == ["CMD", "python", "-m", "services.inventory.health"]


@pytest.mark.parametrize("service", APP_SERVICES)
def test_entry_points_exist(service):
    argv = topology.command(service, host="0.0.0.0")
    if argv[0] == "gunicorn":
        module, _, factory = argv[-1].partition(":")
        assert callable(getattr(importlib.import_module(module), factory.removesuffix("()")))
        assert re.search(r"^gunicorn==", (paths.ROOT / "requirements.txt").read_text(), re.M)
    else:
        assert argv[:2] == ["python", "-m"]
        assert importlib.util.find_spec(argv[2] + ".__main__") is not None
    assert importlib.util.find_spec("services.inventory.health") is not None


def test_dockerfile_installs_only_the_pinned_requirements_as_a_non_root_user():
    lines = [l.strip() for l in DOCKERFILE.splitlines() if l.strip() and not l.strip().startswith("#")]
    assert re.match(r"FROM python:3\.\d+(\.\d+)?-slim", lines[0])
    pip = [l for l in lines if "pip install" in l]
    assert pip == ["RUN pip install -r requirements.txt"]
    copies = [l.split()[1] for l in lines if l.startswith("COPY")]
    assert copies == ["requirements.txt", "services/"]
    users = [l.split()[1] for l in lines if l.startswith("USER")]
    assert users and users[-1] not in ("root", "0")
    ignore = (paths.ROOT / ".dockerignore").read_text().split()
    assert {"*", "!requirements.txt", "!services/"} <= set(ignore)


def test_scaled_inventory_replicas_get_distinct_stable_transactional_ids(monkeypatch):
    env = {k: v for k, v in SVC[INVENTORY]["environment"].items() if not FROM_HOST.match(str(v))}
    assert env["INSTANCE_ID"] == ""
    ids = []
    for hostname in ("3f2a9c1d0b7e", "a41c07d95e22", "3f2a9c1d0b7e"):
        monkeypatch.setattr(socket, "gethostname", lambda h=hostname: h)
        ids.append(InventoryWorker(Config.from_env(env)).transactional_id)
    assert ids[0] != ids[1] and ids[0] == ids[2] == "inventory-consumer-3f2a9c1d0b7e"
    # The embedded stack keeps its numbered instances.
    assert InventoryWorker(Config.from_env({"INSTANCE_ID": "2"})).transactional_id == "inventory-consumer-2"


def test_prometheus_scrapes_both_services_where_they_serve_metrics():
    prom = yaml.safe_load((paths.ROOT / "monitoring" / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in prom["scrape_configs"]}
    assert set(jobs) == set(HTTP)
    for service, job in jobs.items():
        assert job["metrics_path"] == PROMETHEUS_PATH
        assert job["static_configs"] == [{"targets": [f"{service}:{topology.HTTP_PORTS[service]}"]}]
    mount = SVC["prometheus"]["volumes"][0].split(":")
    assert mount[0] == "./monitoring/prometheus.yml"


def test_jupyter_reaches_the_stack_by_service_names():
    env = SVC["jupyter"]["environment"]
    stack = stack_from_env(env)
    assert isinstance(stack, ComposeStack) and stack.in_network
    assert stack.bootstrap == env["KAFKA_BOOTSTRAP"]
    assert published("jupyter") == [("127.0.0.1", 8888, 8888)]
