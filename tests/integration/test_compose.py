"""The containerised stack against the real Docker Engine: docker-compose.yml, the images built
offline, the seed's API quick reference, the whole lab with --compose, a crashed replica,
Prometheus, and a clean `down -v`.

Everything runs under compose project names of its own (kafka-lab-test, kafka-lab-smoke), so
a user's stack is never touched, on the default host ports when they are free (the quick
reference is then verbatim) and on free ones otherwise. Without a Docker daemon these tests
skip and say why; CI (.ci/run) installs and starts one and sets LAB_REQUIRE_DOCKER, so there
they fail instead.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time

import pytest
import requests

from lab import images, paths, results
from lab.compose import ComposeStack
from lab.experiments import true_counts, wait_settled
from lab.topology import ANALYTICS, HTTP_PORTS, INVENTORY, KAFKA, KAFKA_EXTERNAL_PORT, PRODUCER
from tests.conftest import free_port

PROJECT = "kafka-lab-test"
QUICK = paths.PARAMS_DIR / "quick.yaml"
TIMEOUT_S = 900   # guards against a hang, not performance expectations


def docker_answers() -> str | None:
    """None when a Docker daemon and Compose v2 answer, else the reason they do not."""
    if os.environ.get("LAB_DOCKER_UNAVAILABLE"):
        return os.environ["LAB_DOCKER_UNAVAILABLE"]
    if shutil.which("docker") is None:
        return "no docker CLI: scripts/install-docker.sh installs Docker Engine and Compose v2"
    for argv, what in ((["docker", "info"], "no Docker daemon answers"),
                       (["docker", "compose", "version"], "no Compose v2 plugin")):
        if subprocess.run(argv, capture_output=True).returncode != 0:
            return f"{what}: scripts/install-docker.sh installs and starts it"
    return None


@pytest.fixture(scope="module", autouse=True)
def docker_or_skip():
    reason = docker_answers()
    if reason and os.environ.get("LAB_REQUIRE_DOCKER"):
        pytest.fail(f"LAB_REQUIRE_DOCKER is set but {reason}")
    if reason:
        pytest.skip(f"Docker tests skipped: {reason}")
    try:
        images.ensure_images(progress=lambda m: print(m, flush=True))
    except images.StackError as exc:   # e.g. not root, so no debootstrap for the offline images
        if os.environ.get("LAB_REQUIRE_DOCKER"):
            raise
        pytest.skip(f"Docker tests skipped: no image can be pulled or built here: {str(exc).splitlines()[0]}")


def port_or_free(port: int) -> int:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return free_port()
    return port


def project_leftovers(project: str) -> dict[str, list[str]]:
    """Containers, networks and volumes Docker still holds for a compose project."""
    label = f"label=com.docker.compose.project={project}"
    out = {}
    for kind, argv in (("containers", ["ps", "-a", "-q"]), ("networks", ["network", "ls", "-q"]),
                       ("volumes", ["volume", "ls", "-q"])):
        res = subprocess.run(["docker", *argv, "--filter", label], capture_output=True, text=True, check=True)
        out[kind] = res.stdout.split()
    return out


def host_env(stack: ComposeStack, **extra) -> dict:
    """The environment a user sets to drive this very compose stack with ./run_all.sh --compose."""
    env = {k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP", "LAB_STACK")}
    env.update({k: v for k, v in stack.child_environment().items() if v}, PYTHONPATH=str(paths.ROOT), **extra)
    env.pop("LAB_STACK", None)   # --compose on the command line says it, as a user would
    return env


def test_compose_smoke_script_runs_as_written():
    # Before the module's stack exists: the script uses the default ports unless told otherwise.
    ports = {"PRODUCER_PORT": port_or_free(HTTP_PORTS[PRODUCER]), "ANALYTICS_PORT": port_or_free(HTTP_PORTS[ANALYTICS]),
             "KAFKA_EXTERNAL_PORT": port_or_free(KAFKA_EXTERNAL_PORT)}
    res = subprocess.run(["bash", "scripts/compose-smoke.sh", "500"], cwd=paths.ROOT, capture_output=True, text=True,
                         env={**os.environ, **{k: str(v) for k, v in ports.items()}}, timeout=TIMEOUT_S)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "compose-smoke: OK: 500 produced" in res.stdout
    assert project_leftovers("kafka-lab-smoke") == {"containers": [], "networks": [], "volumes": []}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = ComposeStack(home=tmp_path_factory.mktemp("compose-home"), project=PROJECT,
                     producer_port=port_or_free(HTTP_PORTS[PRODUCER]),
                     analytics_port=port_or_free(HTTP_PORTS[ANALYTICS]),
                     kafka_external_port=port_or_free(KAFKA_EXTERNAL_PORT),
                     progress=lambda msg: print(msg, flush=True))
    s.down(wipe=True)   # an interrupted earlier run's leftovers: counts start at 0
    try:
        s.up()
        yield s
    finally:
        s.down(wipe=True)


def test_up_builds_and_every_service_is_healthy_on_the_configured_images(stack):
    st = stack.status()
    for service in (KAFKA, PRODUCER, INVENTORY, ANALYTICS):
        assert st[service]["running"], service
        assert set(st[service]["health"].values()) == {"healthy"}, st[service]
    kafka_image = subprocess.run(["docker", "inspect", "--format", "{{.Config.Image}}", stack.container(KAFKA)],
                                 capture_output=True, text=True, check=True).stdout.strip()
    assert kafka_image == images.effective_images()["KAFKA_IMAGE"]
    size = subprocess.run(["docker", "image", "inspect", "--format", "{{.Size}}", "kafka-lab-services:local"],
                          capture_output=True, text=True, check=True).stdout.strip()
    assert int(size) < 400e6, f"the services' image is {int(size) / 1e6:.0f} MB"


def quick_reference(stack: ComposeStack) -> list[str]:
    """The README's API quick reference (the spec's, verbatim), one command per entry, on this stack's ports."""
    readme = (paths.ROOT / "README.md").read_text()
    block = readme.split("The spec's quick reference works as written", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = [" ".join(line.rstrip("\\").strip() for line in chunk.splitlines() if not line.startswith("#"))
                for chunk in block.strip().split("\n\n")]
    return [c.replace("localhost:7001", f"localhost:{stack.producer_port}")
             .replace("localhost:7002", f"localhost:{stack.analytics_port}") for c in commands]


def test_the_seeds_quick_reference_works_and_each_answer_is_json(stack):
    commands = quick_reference(stack)
    assert len(commands) == 5 and commands[0].startswith("curl -X POST http://localhost:")
    answers = []
    for i, cmd in enumerate(commands):
        if i == 2:   # /metrics counts what the bulk wrote once analytics has folded it
            wait_settled(stack)
        piped = cmd if "json.tool" in cmd else f"{cmd} | python3 -m json.tool"
        res = subprocess.run(["bash", "-o", "pipefail", "-c", piped.replace("curl ", "curl -sS ", 1)],
                             capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, (cmd, res.stderr)
        answers.append(json.loads(res.stdout))
    order, bulk, live, replay, stats = answers
    assert {"order_id", "partition", "offset"} <= set(order)
    assert bulk["produced"] == 10_000 and bulk["failed"] == 0
    assert live["orders_total"] == live["inventory_events_total"] == 10_001
    assert replay["diff"] == {} and replay["after"]["orders_total"] == 10_001
    assert stats["events_acked_total"] == 10_001


def test_metrics_and_replay_equal_an_independent_read_of_the_topics(stack):
    live = wait_settled(stack)
    truth = true_counts(stack.service_config())
    for key, value in truth.items():
        assert live[key] == value, key
    replay = requests.post(stack.analytics_url + "/replay", timeout=300).json()
    assert replay["diff"] == {}
    assert {k: replay["after"][k] for k in truth} == truth


def verify(stack: ComposeStack) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lab.cli", "--compose", "verify"], cwd=paths.ROOT,
                          env=host_env(stack), capture_output=True, text=True, timeout=TIMEOUT_S)


def test_a_replica_killed_mid_burst_is_restarted_by_its_policy_and_nothing_is_lost_or_doubled(stack):
    stack.restart(INVENTORY, {"THROTTLE_MS": 2}, instances=2)
    try:
        before = stack.restart_count(INVENTORY, 1)
        burst = {}
        producer = threading.Thread(target=lambda: burst.update(requests.post(
            stack.producer_url + "/orders/bulk", json={"n": 3000, "item": "mixed"}, timeout=300).json()))
        producer.start()
        time.sleep(1.0)   # mid-burst: the replica holds an open transaction
        stack.crash(INVENTORY, 1)
        producer.join()
        assert burst["produced"] == 3000
        deadline = time.monotonic() + 120
        while stack.restart_count(INVENTORY, 1) == before or not stack.status()[INVENTORY]["running"]:
            assert time.monotonic() < deadline, "the restart policy did not bring the replica back"
            time.sleep(1)
        wait_settled(stack, timeout_s=300)
    finally:
        stack.restart(INVENTORY, {}, instances=1)
    res = verify(stack)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "OK: nothing lost, nothing doubled, stock balances" in res.stdout
    assert re.search(r"InventoryEvents .*duplicates=0  missing=0", res.stdout)


def test_the_whole_lab_runs_on_the_compose_stack(stack, tmp_path):
    reports = tmp_path / "reports"
    res = subprocess.run([sys.executable, "-m", "lab.cli", "--compose", "--keep", "--params", str(QUICK)],
                         cwd=paths.ROOT, env=host_env(stack, LAB_REPORTS_DIR=str(reports)),
                         capture_output=True, text=True, timeout=TIMEOUT_S)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-3000:]
    for f in ("kafka_metrics_report.txt", "report.html", "figures/lag_chart.png"):
        assert (reports / f).exists(), f
    rec = results.load_all(reports / "results")
    assert rec[results.LOAD]["reconciliation"]["reconciled"]
    lag = rec[results.LAG]
    assert lag["caught_up"] and max(s["total_lag"] for s in lag["samples"] if s["phase"] == 1) > 0
    assert max(p["instances"] for p in lag["phases"]) == 3   # the scale-out ran through compose --scale
    replay = rec[results.REPLAY]
    assert replay["replay"]["after_matches_truth"] and replay["replay_matters"]["replay_after_matches_truth"]
    assert "docker compose (project kafka-lab-test)" in (reports / "kafka_metrics_report.txt").read_text()
    # The experiments put the services back: one unthrottled consumer, analytics rebuilding.
    st = stack.status()
    assert st[INVENTORY]["instances"] == 1 and st[INVENTORY]["overrides"] == {}
    assert st[ANALYTICS]["overrides"] == {}


def test_prometheus_answers_a_lag_query(stack):
    port = port_or_free(9090)
    env = {"PROMETHEUS_PORT": str(port)}
    stack.env.update(env)
    stack._compose("--profile", "monitoring", "--progress", "quiet", "up", "--detach", "prometheus", capture=True)
    deadline = time.monotonic() + 120
    series = []
    while time.monotonic() < deadline and not series:
        try:
            body = requests.get(f"http://127.0.0.1:{port}/api/v1/query",
                                params={"query": "kafka_consumergroup_group_lag"}, timeout=5).json()
            series = body["data"]["result"]
        except (requests.RequestException, ValueError, KeyError):
            pass
        time.sleep(2)
    assert series, "no kafka_consumergroup_group_lag series in Prometheus"
    groups = {s["metric"]["group"] for s in series}
    assert {"inventory-grp", "analytics-grp"} <= groups
    # Each target is 'unknown' until its first scrape (every 5 s): wait for both, bounded.
    health: dict = {}
    while time.monotonic() < deadline + 30 and health != {PRODUCER: "up", ANALYTICS: "up"}:
        targets = requests.get(f"http://127.0.0.1:{port}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
        health = {t["labels"]["job"]: t["health"] for t in targets}
        time.sleep(1)
    assert health == {PRODUCER: "up", ANALYTICS: "up"}


def test_the_jupyter_profile_serves_jupyterlab_against_the_compose_stack(stack):
    port = port_or_free(8888)
    stack.env.update({"JUPYTER_PORT": str(port)})
    stack._compose("--profile", "jupyter", "--progress", "quiet", "up", "--detach", "--build", "jupyter", capture=True)
    token, deadline = None, time.monotonic() + 120
    while token is None and time.monotonic() < deadline:
        logs = subprocess.run(["docker", "logs", stack.container("jupyter")], capture_output=True, text=True).stderr
        token = next(iter(re.findall(r"/lab\?token=(\w+)", logs)), None)
        time.sleep(1)
    assert token, "JupyterLab printed no login URL"
    status = requests.get(f"http://127.0.0.1:{port}/api/status", params={"token": token}, timeout=10)
    assert status.status_code == 200
    assert requests.get(f"http://127.0.0.1:{port}/api/status", timeout=10).status_code == 403   # no token
    # A kernel's view from inside: lab_stack() is the compose stack, by service names.
    requests.post(stack.producer_url + "/order", json={"item": "pizza", "qty": 1}, timeout=30).raise_for_status()
    wait_settled(stack)
    probe = ("from lab.experiments import lab_stack, metrics; s = lab_stack(); "
             "print(type(s).__name__, s.bootstrap, metrics(s)['orders_total'])")
    res = subprocess.run(["docker", "exec", stack.container("jupyter"), "python", "-c", probe],
                         capture_output=True, text=True, timeout=120)
    kind, bootstrap, orders = res.stdout.split()
    assert (kind, bootstrap) == ("ComposeStack", "kafka:9092") and int(orders) > 0
    # Its files belong to the checkout's owner.
    uid = subprocess.run(["docker", "exec", stack.container("jupyter"), "id", "-u"], capture_output=True,
                         text=True).stdout.strip()
    assert int(uid) == os.getuid()


def volumes_of_containers(project: str) -> dict[str, set[str]]:
    """The named and the anonymous volumes mounted by a compose project's containers."""
    ids = subprocess.run(["docker", "ps", "-a", "-q", "--filter", f"label=com.docker.compose.project={project}"],
                         capture_output=True, text=True, check=True).stdout.split()
    out = subprocess.run(["docker", "inspect", "--format", "{{json .Mounts}}", *ids],
                         capture_output=True, text=True, check=True).stdout
    names = {m["Name"] for line in out.splitlines() for m in json.loads(line) if m["Type"] == "volume"}
    # Compose names its volumes <project>_<name>; Docker names an anonymous one by 64 hex digits.
    return {"named": {n for n in names if n.startswith(f"{project}_")},
            "anonymous": {n for n in names if re.fullmatch(r"[0-9a-f]{64}", n)}}


def test_down_keeps_the_broker_volume_only_and_down_v_leaves_nothing(stack):
    mounted = volumes_of_containers(PROJECT)
    # init-topics runs the Kafka image without kafka-data: its VOLUME line gives it an anonymous one.
    assert mounted["named"] == {f"{PROJECT}_kafka-data"} and mounted["anonymous"]
    stack.down()
    left = set(subprocess.run(["docker", "volume", "ls", "-q"], capture_output=True, text=True,
                              check=True).stdout.split())
    assert project_leftovers(PROJECT)["containers"] == [] and mounted["anonymous"].isdisjoint(left)
    assert f"{PROJECT}_kafka-data" in left   # topics and offsets are kept until down --wipe
    stack.down(wipe=True)
    assert project_leftovers(PROJECT) == {"containers": [], "networks": [], "volumes": []}


def test_a_failing_image_build_names_its_step(tmp_path):
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(f"FROM {images.BASE_IMAGE}\nRUN true\nRUN echo the-broken-step && exit 3\n")
    with pytest.raises(images.StackError) as exc:
        images.build("kafka-lab/broken:test", str(dockerfile), progress=lambda m: None)
    first = str(exc.value).splitlines()[0]
    assert "failed at" in first and "RUN echo the-broken-step && exit 3" in first
    assert not images.image_exists("kafka-lab/broken:test")
    leftovers = subprocess.run(["docker", "ps", "-a", "-q", "--filter", "status=exited", "--filter",
                                f"ancestor={images.BASE_IMAGE}"], capture_output=True, text=True).stdout.split()
    assert leftovers == [], "the failed step's container was left behind"


def test_a_broker_that_never_becomes_healthy_prints_its_log(tmp_path):
    # The compose file with one broken broker setting, beside the real one (its build context is ".").
    import yaml
    doc = yaml.safe_load((paths.ROOT / "docker-compose.yml").read_text())
    doc["services"][KAFKA]["environment"]["KAFKA_PROCESS_ROLES"] = "nonsense"
    broken = paths.ROOT / f".compose-broken-{os.getpid()}.yml"
    broken.write_text(yaml.safe_dump(doc))
    s = ComposeStack(home=tmp_path, project="kafka-lab-test-broken", compose_file=broken,
                     producer_port=free_port(), analytics_port=free_port(), kafka_external_port=free_port(),
                     progress=lambda m: None)
    try:
        with pytest.raises(images.StackError) as exc:
            s.up()
        message = str(exc.value)
        assert "--- last 30 lines of kafka-lab-test-broken-kafka-1 ---" in message
        assert "nonsense" in message   # the broker's own complaint, from its log
    finally:
        s.down(wipe=True)
        broken.unlink()
    assert project_leftovers("kafka-lab-test-broken") == {"containers": [], "networks": [], "volumes": []}
