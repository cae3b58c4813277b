"""What every stack is and shares: the LabStack protocol, StackError, the admin step, restoring the services.

The embedded Stack (lab/stack.py) and ComposeStack (lab/compose.py) both are a LabStack.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol, runtime_checkable

from lab.topology import ANALYTICS, INVENTORY

log = logging.getLogger(__name__)


class StackError(RuntimeError):
    """A stack operation failed; the message says what and where to look."""


@runtime_checkable
class LabStack(Protocol):
    """What the pipeline, the notebooks, verify and the bench use of a stack: Stack and ComposeStack both are one."""
    home: Path
    producer_port: int
    analytics_port: int
    external_bootstrap: str | None
    env: dict
    progress: object

    @property
    def bootstrap(self) -> str: ...
    @property
    def producer_url(self) -> str: ...
    @property
    def analytics_url(self) -> str: ...
    @property
    def kind(self) -> str: ...
    def describe(self) -> str: ...
    def service_config(self): ...
    def child_environment(self) -> dict[str, str]: ...
    def up(self) -> None: ...
    def ensure_topics(self) -> None: ...
    def down(self, wipe: bool = False) -> None: ...
    def restart(self, service: str, overrides: dict | None = None, instances: int = 1) -> None: ...
    def kill(self, service: str, instance: int = 0) -> bool: ...
    def start_instance(self, service: str, instance: int) -> None: ...
    def status(self) -> dict: ...


@contextmanager
def admin_session(cfg, doing: str):
    """The lab's admin client for one step; a Kafka error becomes a one-line StackError naming the step.
    A function, not a method: ComposeStack borrows Stack.ensure_topics, which must need only service_config()."""
    from kafka.errors import KafkaError

    from services.common import kafka_clients
    try:
        admin = kafka_clients.admin(cfg)
    except KafkaError as exc:
        raise StackError(explain(exc, cfg)) from None
    try:
        yield admin
    except KafkaError as exc:
        raise StackError(f"could not {doing}: {explain(exc, cfg)}") from None
    finally:
        admin.close()


def explain(exc: Exception, cfg) -> str:
    """One line for a Kafka failure at up: unreachable, TLS, login or ACL, with the address and the fix."""
    from services.common.kafka_access import explain as kafka_explain
    return kafka_explain(exc, cfg)


def restore_services(stack: LabStack) -> list[str]:
    """Undo what the experiments change.

    inventory-consumer unthrottled, exactly-once, x1; analytics rebuilding at start.
    """
    restored = []
    status = stack.status()
    inv = status[INVENTORY]
    changed = ("THROTTLE_MS", "PROCESSING_GUARANTEE")   # notebooks 02 and 04
    if any(k in inv["overrides"] for k in changed) or inv["instances"] != 1:
        stack.restart(INVENTORY, {k: v for k, v in inv["overrides"].items() if k not in changed}, instances=1)
        restored.append(INVENTORY)
    an = status[ANALYTICS]
    if "ANALYTICS_REBUILD" in an["overrides"] or not an["running"]:
        stack.restart(ANALYTICS, {k: v for k, v in an["overrides"].items() if k != "ANALYTICS_REBUILD"})
        restored.append(ANALYTICS)
    if restored:
        log.info("restored %s to normal", ", ".join(restored))
    return restored
