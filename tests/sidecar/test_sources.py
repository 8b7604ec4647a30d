"""STS sources against STS emulators: parameters, role chaining, token file errors."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from sidecred.sidecar.assume_role import (
    ROLE_CHAINING_MAX_DURATION,
    AssumeRoleSource,
    chained_duration,
)
from sidecred.sidecar.config import load_config
from sidecred.sidecar.credentials import SourceError
from sidecred.sidecar.sources import WebIdentitySource, build_source
from tests.sidecar.sidecar_process import ROLE_ARN, sidecar_env
from tests.support.scripted_sts import (
    access_denied,
    error_xml,
    role_chaining_limit,
    success_xml,
)


@pytest.fixture
def use_env(monkeypatch):
    def apply(env: dict[str, str]):
        for name in (
            "AWS_ENDPOINT_URL_STS",
            "AWS_CONFIG_FILE",
            "AWS_SHARED_CREDENTIALS_FILE",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_EC2_METADATA_DISABLED",
        ):
            if name in env:
                monkeypatch.setenv(name, env[name])
            else:
                monkeypatch.delenv(name, raising=False)
        return load_config(env)

    return apply


def test_assume_role_sends_tags_external_id_and_source_identity(
    scripted_sts_factory, tmp_path, use_env
):
    sts = scripted_sts_factory(lambda p: (200, success_xml(p)))
    cfg = use_env(
        sidecar_env(tmp_path, sts.url, source="assume-role", SIDECRED_EXTERNAL_ID="ext-42")
    )
    source = build_source(cfg)
    assert isinstance(source, AssumeRoleSource)
    creds = source.fetch()
    assert creds.role_arn == ROLE_ARN and creds.account_id == "123456789012"
    call = sts.calls[0]
    assert call["Action"] == "AssumeRole"
    assert call["ExternalId"] == "ext-42"
    assert call["SourceIdentity"] == call["RoleSessionName"] == "shop.web-7d4b9c-x2x9q"
    tags = {call[f"Tags.member.{i}.Key"]: call[f"Tags.member.{i}.Value"] for i in range(1, 5)}
    assert tags == {
        "kubernetes-namespace": "shop",
        "kubernetes-pod-name": "web-7d4b9c-x2x9q",
        "kubernetes-pod-uid": "6f1c1f0e-3b8a-4d6e-9a57-0c2f4e1b7a10",
        "kubernetes-service-account": "web",
    }
    assert "ASIA" not in repr(creds) and creds.secret_access_key not in repr(creds)


def test_source_identity_is_namespace_and_pod_whatever_the_session_name(
    scripted_sts_factory, tmp_path, use_env
):
    sts = scripted_sts_factory(lambda p: (200, success_xml(p)))
    env = sidecar_env(
        tmp_path, sts.url, source="assume-role", SIDECRED_SESSION_NAME="prod.payments-api-0"
    )
    build_source(use_env(env)).fetch()
    call = sts.calls[0]
    assert call["RoleSessionName"] == "shop.prod.payments-api-0"
    assert call["SourceIdentity"] == "shop.web-7d4b9c-x2x9q"


def test_sts_refusal_is_marked_refused_and_throttling_is_not(
    scripted_sts_factory, tmp_path, use_env
):
    sts = scripted_sts_factory(access_denied)
    with pytest.raises(SourceError) as err:
        build_source(use_env(sidecar_env(tmp_path, sts.url))).fetch()
    assert err.value.code == "AccessDenied" and err.value.refused
    sts.behaviour = lambda p: (400, error_xml("Throttling", "Rate exceeded"))
    with pytest.raises(SourceError) as err:
        build_source(use_env(sidecar_env(tmp_path, sts.url))).fetch()
    assert err.value.code == "Throttling" and not err.value.refused


def test_role_chaining_refusal_clamps_to_one_hour(scripted_sts_factory, tmp_path, use_env):
    sts = scripted_sts_factory(role_chaining_limit)
    cfg = use_env(
        sidecar_env(tmp_path, sts.url, source="assume-role", SIDECRED_SESSION_DURATION="43200")
    )
    source = build_source(cfg)
    source.fetch()
    source.fetch()
    durations = [c["DurationSeconds"] for c in sts.calls]
    # refused once at 12 h, then an hour, and an hour from then on without asking again
    assert durations == ["43200", "3600", "3600"]


@pytest.mark.parametrize(
    ("method", "expected"),
    [
        ("env", 43200),
        ("assume-role", 3600),
        ("iam-role", 3600),
        ("container-role", 3600),
        (None, 43200),
    ],
)
def test_chained_duration(method, expected):
    assert chained_duration(43200, method) == expected
    assert chained_duration(1800, method) == 1800
    assert ROLE_CHAINING_MAX_DURATION == 3600


def test_assume_role_without_base_credentials_is_a_clear_error(
    scripted_sts_factory, tmp_path, use_env
):
    sts = scripted_sts_factory(lambda p: (200, success_xml(p)))
    env = sidecar_env(tmp_path, sts.url, source="assume-role")
    del env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]
    source = build_source(use_env(env))
    with pytest.raises(SourceError) as err:
        source.fetch()
    assert err.value.code == "NoCredentialsError"
    assert "Unable to locate credentials" in err.value.message
    assert sts.calls == []


def test_web_identity_rereads_the_token_and_is_unsigned(scripted_sts_factory, tmp_path, use_env):
    sts = scripted_sts_factory(lambda p: (200, success_xml(p)))
    cfg = use_env(sidecar_env(tmp_path, sts.url))
    source = build_source(cfg)
    assert isinstance(source, WebIdentitySource)
    source.fetch()
    Path(cfg.web_identity_token_file or "").write_text("rotated-token-value\n")
    source.fetch()
    assert sts.calls[0]["WebIdentityToken"].startswith("eyJ")
    assert sts.calls[1]["WebIdentityToken"] == "rotated-token-value"


@pytest.mark.parametrize("content", [None, ""])
def test_web_identity_token_missing_or_empty(scripted_sts_factory, tmp_path, use_env, content):
    sts = scripted_sts_factory(lambda p: (200, success_xml(p)))
    cfg = use_env(sidecar_env(tmp_path, sts.url))
    token_file = Path(cfg.web_identity_token_file or "")
    if content is None:
        token_file.unlink()
    else:
        token_file.write_text(content)
    with pytest.raises(SourceError) as err:
        build_source(cfg).fetch()
    assert err.value.code == "WebIdentityTokenUnreadable"
    assert str(token_file) in err.value.message
    assert sts.calls == []


def test_assume_role_without_botocore_installed_says_which_image_has_it(
    scripted_sts_factory, tmp_path, use_env, monkeypatch
):
    # The default sidecar image has no botocore: importing it fails as it would there.
    sts = scripted_sts_factory(lambda p: (200, success_xml(p)))
    config = use_env(sidecar_env(tmp_path, sts.url, source="assume-role"))
    monkeypatch.delitem(sys.modules, "sidecred.sidecar.assume_role", raising=False)
    monkeypatch.setitem(sys.modules, "botocore.session", None)
    with pytest.raises(SourceError) as err:
        build_source(config)
    assert err.value.code == "AssumeRoleUnavailable"
    assert "botocore" in err.value.message and "-assume-role sidecar image" in err.value.message
    assert sts.calls == []


def test_web_identity_needs_no_botocore(scripted_sts_factory, tmp_path, use_env, monkeypatch):
    sts = scripted_sts_factory(lambda p: (200, success_xml(p)))
    config = use_env(sidecar_env(tmp_path, sts.url))
    for name in [m for m in sys.modules if m == "botocore" or m.startswith("botocore.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "botocore", None)
    assert build_source(config).fetch().access_key_id == "ASIAFAULTSTSKEY00001"
