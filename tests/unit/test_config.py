"""Config is read from the environment once and frozen."""
import dataclasses

import pytest

from services.common.config import ENV_DEFAULTS, Config


def test_defaults_match_the_spec_ports_and_local_binding():
    cfg = Config.from_env({})
    assert (cfg.producer_port, cfg.analytics_port) == (7001, 7002)
    assert cfg.producer_host == cfg.analytics_host == "127.0.0.1"
    assert cfg.throttle_ms == 0 and cfg.analytics_rebuild is True


def test_environment_and_overrides():
    cfg = Config.from_env({"THROTTLE_MS": "100", "ANALYTICS_REBUILD": "0"}, instance_id=2)
    assert (cfg.throttle_ms, cfg.analytics_rebuild, cfg.instance_id) == (100, False, 2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.throttle_ms = 5
    with pytest.raises(TypeError):
        Config.from_env({}, no_such_field=1)


def test_every_env_var_maps_to_a_field():
    assert len(ENV_DEFAULTS) == len(dataclasses.fields(Config))
