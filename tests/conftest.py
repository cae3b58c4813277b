"""Shared fixtures. Integration tests get one real embedded stack per session, on free ports in a temp dir."""
from __future__ import annotations

import os
import socket
from contextlib import contextmanager

import pytest
import requests

from services.common.config import ENV_DEFAULTS

# The suite starts stacks of its own. A lab configured in the caller's shell (LAB_HOME, its
# ports, KAFKA_BOOTSTRAP, a token, service settings) must neither leak into them nor be
# touched by them: with LAB_HOME and KAFKA_PORT exported, services of a test stack were
# started with the caller's LAB_HOME. Removed before lab.paths reads LAB_HOME at import.
for _var in (*ENV_DEFAULTS, "LAB_HOME", "LAB_REPORTS_DIR", "LAB_STACK", "KAFKA_PORT", "KAFKA_CONTROLLER_PORT"):
    os.environ.pop(_var, None)

from lab.stack import Stack  # noqa: E402 - after the environment is cleaned

# The seed's test command (python tests/test_kafka.py) is a program run against a running stack, not a
# pytest module; tests/integration/test_seed_command.py runs it against the suite's own stack.
collect_ignore = ["test_kafka.py"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running(stack):
    """The stack up for the block, and down after it whatever happened (a fixture yields inside)."""
    try:
        stack.up()
        yield stack
    finally:
        stack.down()


def make_stack(home, **env) -> Stack:
    """A stack of its own: temp state dir, free ports, so it never meets a running lab stack."""
    return Stack(home=home, kafka_port=free_port(), controller_port=free_port(),
                 producer_port=free_port(), analytics_port=free_port(), env=env,
                 progress=lambda msg: print(msg, flush=True))


def make_cluster_stack(home, brokers: int = 3, **env) -> Stack:
    """An embedded cluster of its own: every node on free ports."""
    return Stack(home=home, brokers=brokers, broker_ports=tuple((free_port(), free_port()) for _ in range(brokers)),
                 producer_port=free_port(), analytics_port=free_port(), env=env,
                 progress=lambda msg: print(msg, flush=True))


@pytest.fixture(scope="session")
def cluster_stack(tmp_path_factory):
    """A running 3-broker embedded cluster (RF 3, min ISR 2) with the three services; shared by the failover tests."""
    with running(make_cluster_stack(tmp_path_factory.mktemp("lab-cluster"), INITIAL_STOCK=1_000_000)) as s:
        yield s


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    """A running embedded stack: real Kafka broker (KRaft), topics, the three services."""
    with running(make_stack(tmp_path_factory.mktemp("lab-stack"), INITIAL_STOCK=1_000_000)) as s:
        yield s


@pytest.fixture(scope="session")
def http():
    """A requests session for the services."""
    with requests.Session() as session:
        yield session
