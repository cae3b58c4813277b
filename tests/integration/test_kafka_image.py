"""The offline Kafka image's entry point and tools, run on the host against the embedded broker's jars.

kafka/image/run and kafka/image/kafka-tool are what the kafka-lab/kafka image runs; here they
run outside a container, with KAFKA_HOME a temporary folder laid out as the image's /opt/kafka.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

from lab import paths
from lab.broker import broker_answers, ensure_jars
from tests.conftest import free_port

IMAGE = paths.ROOT / "kafka" / "image"
CLUSTER_ID = "q1Sh-9_ISia_zwGINzRvyQ"


@pytest.fixture
def kafka_home(tmp_path):
    home = tmp_path / "opt-kafka"
    (home / "bin").mkdir(parents=True)
    (home / "config").mkdir()
    os.symlink(ensure_jars(progress=lambda m: None), home / "libs")
    for f in ("log4j2.properties", "tools-log4j2.properties"):
        shutil.copy(IMAGE / f, home / "config" / f)
    for f in ("run", "kafka-tool"):
        shutil.copy(IMAGE / f, home / "bin" / f)
    for tool in ("kafka-topics.sh", "kafka-broker-api-versions.sh"):
        os.symlink("kafka-tool", home / "bin" / tool)
    return home


def start(home, data, port, controller):
    env = {"PATH": os.environ["PATH"], "KAFKA_HOME": str(home), "CLUSTER_ID": CLUSTER_ID,
           "KAFKA_HEAP_OPTS": "-Xmx256m -Xms256m",
           "KAFKA_NODE_ID": "1", "KAFKA_PROCESS_ROLES": "broker,controller",
           "KAFKA_LISTENERS": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}",
           "KAFKA_ADVERTISED_LISTENERS": f"PLAINTEXT://127.0.0.1:{port}",
           "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
           "KAFKA_CONTROLLER_QUORUM_VOTERS": f"1@127.0.0.1:{controller}",
           "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
           "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1", "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
           "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1", "KAFKA_LOG_DIRS": str(data)}
    log = open(data.parent / "broker.out", "a")
    return subprocess.Popen([str(home / "bin" / "run")], env=env, stdout=log, stderr=subprocess.STDOUT)


def wait_answers(proc, bootstrap, timeout=90):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the broker exited"
        try:
            if broker_answers(bootstrap):
                return
        except Exception:  # not up yet
            time.sleep(0.5)
    raise AssertionError(f"no broker at {bootstrap} after {timeout}s")


def stop(proc):
    proc.terminate()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def test_formats_once_serves_and_its_tools_work(kafka_home, tmp_path):
    data = tmp_path / "data"
    port, controller = free_port(), free_port()
    bootstrap = f"127.0.0.1:{port}"
    topics = [str(kafka_home / "bin" / "kafka-topics.sh"), "--bootstrap-server", bootstrap]
    proc = start(kafka_home, data, port, controller)
    try:
        wait_answers(proc, bootstrap)
        assert f"cluster.id={CLUSTER_ID}" in (data / "meta.properties").read_text()
        env = {**os.environ, "KAFKA_HOME": str(kafka_home)}
        subprocess.run([*topics, "--create", "--topic", "kept", "--partitions", "3"], env=env, check=True,
                       capture_output=True, timeout=120)
        versions = subprocess.run([str(kafka_home / "bin" / "kafka-broker-api-versions.sh"),
                                   "--bootstrap-server", bootstrap], env=env, capture_output=True, text=True,
                                  timeout=120)
        assert versions.returncode == 0 and "Produce(0)" in versions.stdout
    finally:
        stop(proc)
    assert "formatting" in (tmp_path / "broker.out").read_text()

    # The second start keeps the formatted storage: the topic is still there.
    proc = start(kafka_home, data, port, controller)
    try:
        wait_answers(proc, bootstrap)
        listed = subprocess.run([*topics, "--list"], env={**os.environ, "KAFKA_HOME": str(kafka_home)},
                                capture_output=True, text=True, timeout=120)
        assert "kept" in listed.stdout.split()
    finally:
        stop(proc)
    assert (tmp_path / "broker.out").read_text().count("formatting") == 1


def test_unformatted_storage_without_a_cluster_id_is_a_one_line_error(kafka_home, tmp_path):
    res = subprocess.run([str(kafka_home / "bin" / "run")], capture_output=True, text=True, timeout=60,
                         env={"PATH": os.environ["PATH"], "KAFKA_HOME": str(kafka_home), "KAFKA_NODE_ID": "1",
                              "KAFKA_LOG_DIRS": str(tmp_path / "empty")})
    assert res.returncode == 1 and res.stderr.strip().count("\n") == 0
    assert "not formatted and CLUSTER_ID is not set" in res.stderr
