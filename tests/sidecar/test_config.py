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


# --- SIDECRED_CONTAINER_ROLES ---------------------------------------------------------
BACKUP = {
    "role_arn": "arn:aws:iam::111122223333:role/backup",
    "session_name": "shop.web-1.backup",
    "token_file": "/var/run/sidecred/backup/token",
}


def with_roles(roles: object, **overrides: str) -> dict[str, str]:
    import json

    return {**VALID, c.ENV_CONTAINER_ROLES: json.dumps(roles), **overrides}


def test_container_roles_are_read():
    cfg = load_config(with_roles({"backup": BACKUP}))
    (role,) = cfg.container_roles
    assert (role.container, role.role_arn, role.session_name) == (
        "backup",
        BACKUP["role_arn"],
        BACKUP["session_name"],
    )
    assert role.token_file == BACKUP["token_file"] and role.auth_token is None
    assert cfg.container_role("backup") is role and cfg.container_role("web") is None


def test_a_containers_session_is_named_after_the_pod_it_runs_in():
    """The webhook names a controller's pod's sessions by its generateName (the pod has no
    name yet); the sidecar uses the pod's name, as the broker does. A custom session name
    is the webhook's whole."""
    entry = {**BACKUP, "session_name": "shop.web-7d4b9c.backup"}
    env = with_roles({"backup": entry}, **{c.ENV_POD_NAME: "web-7d4b9c-x2k4q"})
    cfg = load_config(env)
    assert cfg.session_name_of(cfg.container_roles[0]) == "shop.web-7d4b9c-x2k4q.backup"
    custom = {**BACKUP, "session_name": "shop.nightly.backup"}
    cfg = load_config(with_roles({"backup": custom}, **{c.ENV_SESSION_NAME: "shop.nightly"}))
    assert cfg.session_name_of(cfg.container_roles[0]) == "shop.nightly.backup"
    long_pod = "p" * 60
    cfg = load_config(with_roles({"backup": BACKUP}, **{c.ENV_POD_NAME: long_pod}))
    name = cfg.session_name_of(cfg.container_roles[0])
    assert len(name) == 64 and name.startswith("shop.ppp")  # cut with a hash, like the pod's


def test_container_roles_alone_without_a_pod_role():
    env = with_roles({"backup": BACKUP})
    del env[c.ENV_ROLE_ARN], env[c.ENV_TOKEN_FILE]
    cfg = load_config(env)
    assert cfg.role_arn == "" and cfg.token_file is None and len(cfg.container_roles) == 1


def test_container_roles_in_token_mode_env_carry_their_token_and_repr_hides_it():
    entry = {**{k: BACKUP[k] for k in ("role_arn", "session_name")}, "auth_token": "s3cret-tok"}
    env = with_roles({"backup": entry}, **{c.ENV_TOKEN_MODE: "env", c.ENV_AUTH_TOKEN: "pod-tok"})
    (role,) = load_config(env).container_roles
    assert role.auth_token == "s3cret-tok" and role.token_file is None
    assert "s3cret-tok" not in repr(role)


@pytest.mark.parametrize(
    ("roles", "fragment"),
    [
        ("not json", "SIDECRED_CONTAINER_ROLES is not JSON"),
        (["backup"], "is not a JSON object; expected an object from container name to"),
        ({"Backup": BACKUP}, "'Backup' is not a container name"),
        ({"-x": BACKUP}, "'-x' is not a container name"),
        (
            {"backup": "arn:aws:iam::1:role/x"},
            "SIDECRED_CONTAINER_ROLES['backup'] is not an object",
        ),
        ({"backup": {**BACKUP, "extra": "x"}}, "unknown field(s) 'extra'"),
        ({"backup": {**BACKUP, "auth_token": "x"}}, "unknown field(s) 'auth_token'"),
        ({"backup": {**BACKUP, "role_arn": 7}}, ".role_arn is not a non-empty string"),
        (
            {"backup": {k: v for k, v in BACKUP.items() if k != "session_name"}},
            ".session_name is not",
        ),
        ({"backup": {**BACKUP, "role_arn": "backup"}}, "role_arn='backup' is not an ARN"),
        ({"backup": {**BACKUP, "session_name": "a b"}}, "is not a valid STS session name"),
        (
            {"backup": {**BACKUP, "token_file": "/var/run/sidecred/token"}},
            "['backup'].token_file is also the pod's role's",
        ),
        ({f"c{n}": BACKUP for n in range(65)}, "has 65 entries; at most 64"),
    ],
)
def test_bad_container_roles_are_a_clear_start_up_error(roles, fragment):
    env = {**VALID, c.ENV_CONTAINER_ROLES: roles} if isinstance(roles, str) else with_roles(roles)
    with pytest.raises(ConfigError) as err:
        load_config(env)
    assert fragment in str(err.value)


def test_two_containers_may_not_share_a_token_file():
    other = {**BACKUP, "role_arn": "arn:aws:iam::111122223333:role/other"}
    with pytest.raises(ConfigError) as err:
        load_config(with_roles({"backup": BACKUP, "other": other}))
    assert "['other'].token_file is also container 'backup''s" in str(err.value)
