"""lab/labstack.py restore_services: what the experiments changed is undone, and nothing else is touched."""
from __future__ import annotations

from lab.labstack import restore_services
from lab.topology import ANALYTICS, INVENTORY


class SettingsStack:
    """A stack reduced to its settings: status() and restart() as the real stacks keep them."""

    def __init__(self, inventory: dict, instances: int = 1, analytics: dict | None = None, running: bool = True):
        self.settings = {INVENTORY: {"overrides": inventory, "instances": instances, "running": True},
                         ANALYTICS: {"overrides": analytics or {}, "instances": 1, "running": running}}
        self.restarts: list[tuple] = []

    def status(self) -> dict:
        return {k: dict(v) for k, v in self.settings.items()}

    def restart(self, service, overrides=None, instances=1):
        self.restarts.append((service, dict(overrides or {}), instances))
        self.settings[service] = {"overrides": dict(overrides or {}), "instances": instances, "running": True}


def test_the_experiments_overrides_go_and_a_users_own_stay():
    s = SettingsStack({"THROTTLE_MS": "100", "PROCESSING_GUARANTEE": "at_least_once", "INITIAL_STOCK": "50"},
                      instances=3, analytics={"ANALYTICS_REBUILD": "0", "LOG_LEVEL": "DEBUG"})
    assert restore_services(s) == [INVENTORY, ANALYTICS]
    assert s.settings[INVENTORY]["overrides"] == {"INITIAL_STOCK": "50"} and s.settings[INVENTORY]["instances"] == 1
    assert s.settings[ANALYTICS]["overrides"] == {"LOG_LEVEL": "DEBUG"}
    assert restore_services(s) == []      # nothing left to undo: no restart at all
    assert len(s.restarts) == 2


def test_a_stopped_analytics_is_started_and_a_normal_stack_is_left_alone():
    stopped = SettingsStack({}, analytics={}, running=False)
    assert restore_services(stopped) == [ANALYTICS] and stopped.restarts == [(ANALYTICS, {}, 1)]
    normal = SettingsStack({"INITIAL_STOCK": "50"})
    assert restore_services(normal) == [] and normal.restarts == []
