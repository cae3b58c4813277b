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


def default_image(value: str, variable: str) -> str:
    """An image entry is `${VARIABLE:-default}`: overridable from the environment, the default stated."""
    m = FROM_HOST.match(value)
    assert m and m.group(1) == variable, f"{value}: expected ${{{variable}:-...}}"
    return m.group(2)


def option(line: str, name: str) -> str:
    m = re.search(rf"{name}[ =](\S+)", line)
    assert m, f"{name} missing in: {line}"
    return m.group(1)


def published(service: str) -> list[tuple[str, int, int]]:
    """(host ip, host port, container port) of each published port."""
    out = []
    for p in SVC[service].get("ports", []):
        ip, host, container = re.sub(r"\$\{\w+:-(\d+)\}", r"\1", p).split(":")
        out.append((ip, int(host), int(container)))
    return out


def test_host_ports_can_move_and_the_broker_advertises_the_one_published():
    env = SVC[KAFKA]["environment"]
    assert env["KAFKA_ADVERTISED_LISTENERS"].endswith("EXTERNAL://127.0.0.1:${KAFKA_EXTERNAL_PORT:-9094}")
    assert SVC[KAFKA]["ports"] == ["127.0.0.1:${KAFKA_EXTERNAL_PORT:-9094}:9094"]
    assert SVC[PRODUCER]["ports"] == ["127.0.0.1:${PRODUCER_PORT:-7001}:7001"]
    assert SVC[ANALYTICS]["ports"] == ["127.0.0.1:${ANALYTICS_PORT:-7002}:7002"]
    moved = ComposeStack.from_env({"KAFKA_EXTERNAL_PORT": "19094", "PRODUCER_PORT": "17001", "ANALYTICS_PORT": "17002"})
    assert (moved.bootstrap, moved.producer_url, moved.analytics_url) == \
        ("127.0.0.1:19094", "http://127.0.0.1:17001", "http://127.0.0.1:17002")
    assert {"KAFKA_EXTERNAL_PORT": "19094", "PRODUCER_PORT": "17001"}.items() <= moved._environment().items()


def test_services_are_the_stacks_plus_init_and_optional_profiles():
    assert set(SVC) == {*SERVICES, "init-topics", "jupyter", "prometheus"}
    assert SVC["jupyter"]["profiles"] == ["jupyter"] and SVC["prometheus"]["profiles"] == ["monitoring"]
    assert all("profiles" not in SVC[s] for s in (*SERVICES, "init-topics"))


def test_kafka_image_is_the_embedded_brokers_version_and_every_image_is_pinned():
    assert SVC[KAFKA]["image"] == SVC["init-topics"]["image"]
    assert default_image(SVC[KAFKA]["image"], "KAFKA_IMAGE") == f"apache/kafka:{kafka_version()}"
    assert default_image(SVC["prometheus"]["image"], "PROMETHEUS_IMAGE").startswith("prom/prometheus:")
    images = {name: FROM_HOST.sub(r"\2", svc["image"]) for name, svc in SVC.items()}
    images["python"] = default_image(SVC[PRODUCER]["build"]["args"]["PYTHON_IMAGE"], "PYTHON_IMAGE")
    for name, image in images.items():
        tag = image.rpartition(":")[2]
        assert tag and tag != "latest" and "/" not in tag, f"{name}: unpinned image {image}"


def test_offline_images_have_tags_of_their_own_and_the_kafka_version():
    from lab.images import OFFLINE_IMAGES
    assert set(OFFLINE_IMAGES) == {"KAFKA_IMAGE", "PYTHON_IMAGE", "PROMETHEUS_IMAGE"}
    for tag, dockerfile in OFFLINE_IMAGES.values():
        assert tag.startswith("kafka-lab/") and (paths.ROOT / dockerfile).exists()
    assert OFFLINE_IMAGES["KAFKA_IMAGE"][0] == f"kafka-lab/kafka:{kafka_version()}"


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
    advertised = re.sub(r"\$\{\w+:-(\d+)\}", r"\1", env["KAFKA_ADVERTISED_LISTENERS"])
    assert advertised == f"PLAINTEXT://{internal},EXTERNAL://{external}"
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
    assert {"THROTTLE_MS", "PROCESSING_GUARANTEE"} <= host_variables(COMPOSE)[INVENTORY]
    assert {"ANALYTICS_REBUILD"} <= host_variables(COMPOSE)[ANALYTICS]


@pytest.mark.parametrize("service", APP_SERVICES)
def test_app_services_run_the_embedded_entry_points_from_one_image(service):
    svc = SVC[service]
    assert {k: v for k, v in svc["build"].items() if k != "args"} == {
        "context": ".", "dockerfile": "services/Dockerfile", "target": "services"}
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
        assert re.search(r"^gunicorn==", (paths.ROOT / "requirements-services.txt").read_text(), re.M)
    else:
        assert argv[:2] == ["python", "-m"]
        assert importlib.util.find_spec(argv[2] + ".__main__") is not None
    assert importlib.util.find_spec("services.inventory.health") is not None


def stage(name: str) -> list[str]:
    """The instructions of one stage of services/Dockerfile."""
    lines = [l.strip() for l in DOCKERFILE.splitlines() if l.strip() and not l.strip().startswith("#")]
    starts = [i for i, l in enumerate(lines) if l.startswith("FROM ")]
    for a, b in zip(starts, [*starts[1:], len(lines)], strict=True):
        if lines[a].endswith(f" AS {name}"):
            return lines[a:b]
    raise AssertionError(f"no stage {name}")


def test_services_stage_installs_only_what_the_services_import_as_a_non_root_user():
    lines = stage("services")
    assert lines[0] == "FROM ${PYTHON_IMAGE} AS services"
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.\d+(\.\d+)?-slim", DOCKERFILE, re.M)
    assert [l for l in lines if "pip install" in l] == ["RUN pip install -q -r requirements-services.txt"]
    assert [l.split()[1] for l in lines if l.startswith("COPY")] == ["requirements-services.txt", "services/"]
    users = [l.split()[1] for l in lines if l.startswith("USER")]
    assert users and users[-1] not in ("root", "0")
    assert [l.split()[1] for l in stage("lab") if l.startswith("USER")][-1] not in ("root", "0")
    # requirements.txt is what a user installs for the lab: the services' file and the rest.
    assert "-r requirements-services.txt" in (paths.ROOT / "requirements.txt").read_text().splitlines()
    ignore = (paths.ROOT / ".dockerignore").read_text().split()
    assert {"*", "!requirements*.txt", "!services/"} <= set(ignore)


def test_the_services_requirements_cover_every_third_party_import_of_services():
    import ast
    import sys
    pins = {re.split(r"[=<>\[]", l)[0].lower().replace("_", "-")
            for l in (paths.ROOT / "requirements-services.txt").read_text().splitlines()
            if l.strip() and not l.startswith("#")}
    dist = {"kafka": "kafka-python", "prometheus_client": "prometheus-client", "werkzeug": "flask"}
    imported = set()
    for f in (paths.ROOT / "services").rglob("*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else []
            imported |= {n.split(".")[0] for n in names}
    third_party = {m for m in imported if m not in sys.stdlib_module_names and m not in ("services", "__future__")}
    assert third_party and {dist.get(m, m) for m in third_party} <= pins


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


def test_jupyter_in_compose_uses_the_labs_kernel_websocket_as_run_all_sh_lab_does():
    from lab.jupyter import lab_command
    option = "--ServerApp.kernel_websocket_connection_class="
    ours = [a for a in lab_command(8888) if a.startswith(option)]
    assert ours and ours == [a for a in SVC["jupyter"]["command"] if a.startswith(option)]
