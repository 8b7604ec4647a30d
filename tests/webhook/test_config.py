"""Webhook options: flags, SIDECRED_* env fallbacks, validation."""

from __future__ import annotations

import argparse

import pytest

from sidecred.webhook.config import WebhookConfig, add_config_arguments, config_from_args


def parse(argv: list[str], env: dict[str, str] | None = None) -> WebhookConfig:
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    return config_from_args(parser.parse_args(argv), env or {})


def test_defaults() -> None:
    assert parse([]) == WebhookConfig()


def test_flags_env_and_precedence() -> None:
    env = {
        "SIDECRED_REGION": "eu-west-1",
        "SIDECRED_TOKEN_MODE": "env",
        "SIDECRED_SIDECAR_PORT": "7000",
    }
    config = parse(
        [
            "--base-role-arn",
            "arn:aws:iam::111122223333:role",
            "--token-mode",
            "file",
            "--session-duration",
            "7200",
        ],
        env,
    )
    assert config.base_role_arn == "arn:aws:iam::111122223333:role/"  # trailing slash added
    assert config.token_mode == "file"  # the flag wins over the env
    assert config.region == "eu-west-1"
    assert config.sidecar_port == 7000
    assert config.session_duration == 7200


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--base-role-arn", "arn:aws:iam::1:role/"], "--base-role-arn="),
        (["--base-role-arn", "arn:aws:iam::111122223333:user/"], "--base-role-arn="),
        (["--session-duration", "900"], "--session-duration=900 is outside 3600-43200"),
        (["--session-duration", "1h"], "is not a whole number"),
        (["--sidecar-port", "61081"], "they must differ"),
        (["--health-port", "70000"], "outside 1-65535"),
        (["--annotation-key", "bad key"], "--annotation-key"),
        (["--sidecar-image", "a b"], "--sidecar-image"),
        (["--sidecar-memory-limit", "lots"], "is not a quantity"),
    ],
)
def test_invalid_options(argv: list[str], fragment: str) -> None:
    with pytest.raises(ValueError) as info:
        parse(argv)
    assert fragment in str(info.value)


def test_invalid_choice_from_env() -> None:
    with pytest.raises(ValueError, match="--credential-source='irsa' is not one of"):
        parse([], {"SIDECRED_CREDENTIAL_SOURCE": "irsa"})


def test_every_problem_is_listed() -> None:
    with pytest.raises(ValueError) as info:
        parse(["--session-duration", "1", "--sidecar-port", "0"])
    assert "--session-duration" in str(info.value) and "--sidecar-port" in str(info.value)
