"""The stack's shape, defined once: service names, ports and the command each service runs.

lab/stack.py runs these commands as local processes; docker-compose.yml runs the same ones
in containers, and tests/unit/test_compose.py checks that the compose file agrees.
"""
from __future__ import annotations

from services.common.config import ENV_DEFAULTS

# Service names are the compose service names.
KAFKA = "kafka"
PRODUCER = "producer-order"
INVENTORY = "inventory-consumer"
ANALYTICS = "analytics-consumer"
SERVICES = (KAFKA, PRODUCER, INVENTORY, ANALYTICS)
APP_SERVICES = (PRODUCER, INVENTORY, ANALYTICS)

KAFKA_PORT = 9092             # clients: the embedded broker's only listener; compose's in-network one
KAFKA_CONTROLLER_PORT = 9093  # KRaft controller, never used by clients
KAFKA_EXTERNAL_PORT = 9094    # compose only: the host's way into the containerised broker (as the spec)
HTTP_PORTS = {PRODUCER: int(ENV_DEFAULTS["PRODUCER_PORT"]), ANALYTICS: int(ENV_DEFAULTS["ANALYTICS_PORT"])}

# The HTTP services run under gunicorn with one worker: analytics' consumer thread lives
# in its worker, and one producer per process batches best.
APP_FACTORIES = {PRODUCER: "services.producer.app:create_app()",
                 ANALYTICS: "services.analytics.app:create_app()"}
# How each worker serves concurrent requests. producer-order's requests wait for the broker's
# ack, which in gevent's one thread costs a greenlet switch instead of four thread hand-offs
# (docs/tuning.md). analytics-consumer stays on threads: its loop folds records in Python,
# which would starve gevent's loop.
WORKER_CLASS = {PRODUCER: ["--worker-class", "gevent", "--worker-connections", "256"],
                ANALYTICS: ["--worker-class", "gthread", "--threads", "8"]}
WORKER_MODULES = {INVENTORY: "services.inventory"}


def command(service: str, *, host: str, port: int | None = None,
            python: str = "python", gunicorn: str = "gunicorn") -> list[str]:
    """The argv that runs service; host:port is where an HTTP service listens."""
    if service in APP_FACTORIES:
        # No control socket: every gunicorn of a user shares ~/.gunicorn/gunicorn.ctl, so
        # stacks side by side (tests, a second LAB_HOME) would replace each other's.
        # The config module only holds hooks (services/common/runtime.py).
        return [gunicorn, "--config", "python:services.common.runtime",
                "--workers", "1", *WORKER_CLASS[service], "--no-control-socket",
                "--timeout", "300", "--graceful-timeout", "10", "--log-level", "warning",
                "--bind", f"{host}:{port or HTTP_PORTS[service]}", APP_FACTORIES[service]]
    if service in WORKER_MODULES:
        return [python, "-m", WORKER_MODULES[service]]
    raise ValueError(f"unknown service {service!r}; one of {', '.join(APP_SERVICES)}")
