"""The env contract: every missing or invalid setting is named in one error."""

from __future__ import annotations

import pytest

from sidecred.sidecar import config as c
from sidecred.sidecar.config import ConfigError, credentials_uri, load_config

VALID = {
    c.ENV_ROLE_ARN: "arn:aws:iam::111122223333:role/reader",
    c.ENV_CREDENTIAL_SOURCE: "web-identity",
    c.ENV_SESSION_DURATION: "3600",
    c.ENV_PORT: "9911",
    c.ENV_HEALTH_PORT: "9912",
    c.ENV_TOKEN_MODE: "file",
    c.ENV_TOKEN_FILE: "/var/run/sidecred/token",
    c.ENV_WEB_IDENTITY_TOKEN_FILE: "/var/run/secrets/sidecred/token",
    c.ENV_SIDECAR_MODE: "native",
    c.ENV_POD_NAME: "web-1",
    c.ENV_POD_NAMESPACE: "shop",
    c.ENV_POD_UID: "uid-1",
    c.ENV_SERVICE_ACCOUNT: "web",
}


def test_valid_config():
    cfg = load_config(VALID)
    assert cfg.port == 9911 and cfg.health_port == 9912
    assert cfg.drain_seconds == 0.0 and cfg.retry_cap_seconds == c.DEFAULT_RETRY_CAP_SECONDS
    assert cfg.external_id is None and cfg.region is None


def test_credentials_uri_uses_literal_loopback():
    assert credentials_uri(9911) == "http://127.0.0.1:9911/v1/credentials"


def test_empty_env_names_every_required_variable():
    with pytest.raises(ConfigError) as err:
        load_config({})
    for name in (
        c.ENV_ROLE_ARN,
        c.ENV_CREDENTIAL_SOURCE,
        c.ENV_SESSION_DURATION,
        c.ENV_PORT,
        c.ENV_HEALTH_PORT,
        c.ENV_TOKEN_MODE,
        c.ENV_SIDECAR_MODE,
        c.ENV_POD_NAME,
        c.ENV_POD_NAMESPACE,
        c.ENV_POD_UID,
        c.ENV_SERVICE_ACCOUNT,
    ):
        assert name in str(err.value)


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({c.ENV_ROLE_ARN: "reader"}, "SIDECRED_ROLE_ARN='reader' is not an ARN"),
        ({c.ENV_CREDENTIAL_SOURCE: "kiam"}, "SIDECRED_CREDENTIAL_SOURCE='kiam' is not one of"),
        ({c.ENV_TOKEN_MODE: "header"}, "SIDECRED_TOKEN_MODE='header'"),
        ({c.ENV_SIDECAR_MODE: "daemon"}, "SIDECRED_SIDECAR_MODE='daemon'"),
        ({c.ENV_PORT: "http"}, "SIDECRED_PORT='http' is not a whole number"),
        ({c.ENV_PORT: "70000"}, "SIDECRED_PORT=70000 is outside 1-65535"),
        ({c.ENV_HEALTH_PORT: "9911"}, "must differ"),
        ({c.ENV_SESSION_DURATION: "1h"}, "SIDECRED_SESSION_DURATION='1h' is not a whole number"),
        ({c.ENV_SESSION_DURATION: "60"}, "SIDECRED_SESSION_DURATION=60 is outside"),
        ({c.ENV_TOKEN_FILE: ""}, "SIDECRED_TOKEN_FILE is not set"),
        ({c.ENV_TOKEN_MODE: "env"}, "SIDECRED_AUTH_TOKEN is not set"),
        ({c.ENV_WEB_IDENTITY_TOKEN_FILE: ""}, "SIDECRED_WEB_IDENTITY_TOKEN_FILE is not set"),
        ({c.ENV_DRAIN_SECONDS: "-1"}, "SIDECRED_DRAIN_SECONDS='-1'"),
        ({c.ENV_DRAIN_SECONDS: "inf"}, "SIDECRED_DRAIN_SECONDS='inf'"),
        ({c.ENV_RETRY_CAP_SECONDS: "0"}, "SIDECRED_RETRY_CAP_SECONDS='0'"),
        ({c.ENV_RETRY_CAP_SECONDS: "nan"}, "SIDECRED_RETRY_CAP_SECONDS='nan'"),
    ],
)
def test_each_invalid_setting_is_named(overrides, fragment):
    with pytest.raises(ConfigError, match="invalid configuration") as err:
        load_config({**VALID, **overrides})
    assert fragment in str(err.value)


def test_several_problems_are_reported_together():
    with pytest.raises(ConfigError) as err:
        load_config({**VALID, c.ENV_PORT: "x", c.ENV_SIDECAR_MODE: "y"})
    assert "SIDECRED_PORT" in str(err.value) and "SIDECRED_SIDECAR_MODE" in str(err.value)


def test_assume_role_needs_no_web_identity_file():
    env = {**VALID, c.ENV_CREDENTIAL_SOURCE: "assume-role", c.ENV_EXTERNAL_ID: "ext-1"}
    del env[c.ENV_WEB_IDENTITY_TOKEN_FILE]
    assert load_config(env).external_id == "ext-1"


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("١٢", "SIDECRED_PORT='١٢' is not a whole number"),  # other scripts' digits
        ("²", "SIDECRED_PORT='²' is not a whole number"),  # isdigit() but not int()
        ("8e3", "SIDECRED_PORT='8e3' is not a whole number"),
        ("0", "SIDECRED_PORT=0 is outside 1-65535"),
    ],
)
def test_every_whole_number_setting_takes_only_ascii_digits_in_range(value, fragment):
    with pytest.raises(ConfigError) as err:
        load_config({**VALID, c.ENV_PORT: value})
    assert fragment in str(err.value)


def test_a_valid_whole_number_setting_is_read() -> None:
    assert load_config({**VALID, c.ENV_PORT: " 8100 "}).port == 8100
