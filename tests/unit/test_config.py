"""Config is read from the environment once and frozen."""
import dataclasses

import pytest

from services.common.config import ENV_DEFAULTS, Config, ConfigError, ConnectionConfig, Secret, masked


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
    # The KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_* and KAFKA_SSL_* variables make one field: connection.
    connection_vars = [k for k in ENV_DEFAULTS if k.startswith(("KAFKA_SECURITY", "KAFKA_SASL_", "KAFKA_SSL_"))]
    assert len(connection_vars) == len(dataclasses.fields(ConnectionConfig))
    assert len(ENV_DEFAULTS) - len(connection_vars) + 1 == len(dataclasses.fields(Config))


SCRAM = {"KAFKA_SECURITY_PROTOCOL": "sasl_ssl", "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
         "KAFKA_SASL_USERNAME": "producer-order", "KAFKA_SASL_PASSWORD": "hunter2-secret"}


def test_plaintext_adds_no_client_options():
    assert Config.from_env({}).connection.client_options() == {}


def test_sasl_ssl_settings_reach_the_kafka_clients(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    cfg = Config.from_env({**SCRAM, "KAFKA_SSL_CAFILE": str(ca)})
    assert cfg.connection.client_options() == {
        "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "producer-order", "sasl_plain_password": "hunter2-secret", "ssl_cafile": str(ca)}
    assert cfg.connection.describe() == "SASL_SSL SCRAM-SHA-512 as producer-order"


def test_mtls_passes_the_client_certificate_and_key(tmp_path):
    for name in ("ca.pem", "client.pem", "client.key"):
        (tmp_path / name).write_text("x")
    cfg = Config.from_env({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CAFILE": str(tmp_path / "ca.pem"),
                           "KAFKA_SSL_CERTFILE": str(tmp_path / "client.pem"),
                           "KAFKA_SSL_KEYFILE": str(tmp_path / "client.key")})
    opts = cfg.connection.client_options()
    assert (opts["security_protocol"], opts["ssl_certfile"], opts["ssl_keyfile"]) == \
        ("SSL", str(tmp_path / "client.pem"), str(tmp_path / "client.key"))
    assert "sasl_mechanism" not in opts


def test_the_password_never_shows_in_a_repr_or_a_string():
    cfg = Config.from_env(SCRAM)
    for text in (repr(cfg), str(cfg), repr(cfg.connection), f"{cfg.connection.sasl_password}"):
        assert "hunter2-secret" not in text
    assert "Secret('***')" in repr(cfg)
    assert cfg.connection.sasl_password.reveal() == "hunter2-secret"
    assert masked({"KAFKA_SASL_PASSWORD": "hunter2-secret", "LAB_API_TOKEN": "t", "THROTTLE_MS": "5"}) == \
        {"KAFKA_SASL_PASSWORD": "***", "LAB_API_TOKEN": "***", "THROTTLE_MS": "5"}
    assert Secret("a") == Secret("a") and Secret("a") != Secret("b")


@pytest.mark.parametrize("env, message", [
    ({"KAFKA_SECURITY_PROTOCOL": "TLS"}, "KAFKA_SECURITY_PROTOCOL='TLS': use one of PLAINTEXT, SSL"),
    ({**SCRAM, "KAFKA_SASL_MECHANISM": "GSSAPI"}, "KAFKA_SASL_MECHANISM='GSSAPI'"),
    ({**SCRAM, "KAFKA_SASL_PASSWORD": ""}, "needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"),
    ({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CAFILE": "/no/such/ca.pem"},
     "KAFKA_SSL_CAFILE=/no/such/ca.pem: no such file"),
])
def test_settings_that_cannot_work_are_refused_in_one_line(env, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")) as err:
        Config.from_env(env)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("value, seconds", [("30", 30.0), ("0", 0.0), ("2.5", 2.5)])
def test_analytics_snapshot_interval(value, seconds):
    assert Config.from_env({"ANALYTICS_SNAPSHOT_EVERY_S": value}).analytics_snapshot_every_s == seconds


@pytest.mark.parametrize("value", ["-1", "soon", "nan", "inf"])
def test_an_analytics_snapshot_interval_that_cannot_work_is_refused(value):
    with pytest.raises(ConfigError, match="ANALYTICS_SNAPSHOT_EVERY_S="):
        Config.from_env({"ANALYTICS_SNAPSHOT_EVERY_S": value})


def test_the_api_token_is_a_secret_that_only_the_authorization_header_reveals():
    cfg = Config.from_env({"LAB_API_TOKEN": "s3cret-token"})
    assert "s3cret-token" not in repr(cfg) and "s3cret-token" not in str(cfg.api_token)
    assert cfg.authorization() == {"Authorization": "Bearer s3cret-token"}
    assert Config.from_env({}).authorization() == {}
