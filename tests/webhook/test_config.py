"""Webhook options: flags, SIDECRED_* env fallbacks, validation."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from sidecred.certs.cli import main as certs_main
from sidecred.pods.settings import Settings, add_config_arguments, config_from_args
from sidecred.webhook.serve_cli import main as serve_main


def parse(argv: list[str], env: dict[str, str] | None = None) -> Settings:
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    return config_from_args(parser.parse_args(argv), env or {})


def test_defaults() -> None:
    assert parse([]) == Settings()


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


@pytest.fixture
def broker_ca(tmp_path: Path) -> Path:
    issue = ["--service", "sidecred-broker", "--namespace", "sidecred-system"]
    assert certs_main([*issue, "--out", str(tmp_path)]) == 0
    return tmp_path / "ca.crt"


def test_broker_source_reads_the_ca_at_start(broker_ca: Path) -> None:
    config = parse(
        ["--credential-source", "broker", "--broker-ca-file", str(broker_ca)],
        {"SIDECRED_BROKER_URL": "https://sidecred-broker.sidecred-system.svc:8444"},
    )
    assert config.broker_ca == broker_ca.read_text()
    assert config.broker_audience == "sidecred-broker"
    assert config.sidecar_token_audience == "sidecred-broker"
    assert config.sidecred_audiences == {"sidecred", "sidecred-broker"}


@pytest.mark.parametrize(
    ("url", "ca", "fragment"),
    [
        (None, "ok", "needs --broker-url"),
        ("http://broker:8444", "ok", "must be an https:// URL"),
        ("https://", "ok", "must be an https:// URL"),
        ("https://user@broker", "ok", "must be an https:// URL"),
        ("https://broker", None, "needs --broker-ca-file"),
        ("https://broker", "missing", "is not a readable PEM CA bundle"),
        ("https://broker", "garbage", "is not a readable PEM CA bundle"),
    ],
)
def test_broker_options_are_checked_at_start(
    broker_ca: Path, tmp_path: Path, url: str | None, ca: str | None, fragment: str
) -> None:
    argv = ["--credential-source", "broker"]
    if url is not None:
        argv += ["--broker-url", url]
    if ca is not None:
        path = {"ok": broker_ca, "missing": tmp_path / "nope.crt", "garbage": tmp_path / "g.crt"}
        path["garbage"].write_text("-----BEGIN CERTIFICATE-----\nnot base64\n")
        argv += ["--broker-ca-file", str(path[ca])]
    with pytest.raises(ValueError) as info:
        parse(argv)
    assert fragment in str(info.value)
    assert "Traceback" not in str(info.value)


def test_assume_role_needs_the_unsafe_flag() -> None:
    with pytest.raises(ValueError) as info:
        parse(["--credential-source", "assume-role"])
    message = str(info.value)
    assert "unsafe for multi-tenant clusters" in message
    assert "--allow-unsafe-assume-role-node-credentials" in message
    config = parse(
        ["--credential-source", "assume-role", "--allow-unsafe-assume-role-node-credentials"]
    )
    assert config.credential_source == "assume-role"
    env = {"SIDECRED_ALLOW_UNSAFE_ASSUME_ROLE_NODE_CREDENTIALS": "true"}
    assert parse(["--credential-source", "assume-role"], env).credential_source == "assume-role"
    with pytest.raises(ValueError, match="is not true or false"):
        parse([], {"SIDECRED_ALLOW_UNSAFE_ASSUME_ROLE_NODE_CREDENTIALS": "sure"})


def test_the_assume_role_source_defaults_to_the_sidecar_image_with_botocore() -> None:
    """Only the -assume-role tag can sign; an image chosen by flag or env is kept."""
    unsafe = ["--credential-source", "assume-role", "--allow-unsafe-assume-role-node-credentials"]
    assert parse(unsafe).sidecar_image == f"{Settings().sidecar_image}-assume-role"
    assert parse([]).sidecar_image == Settings().sidecar_image
    mirror = "registry.corp/sidecred-sidecar:0.1.0-assume-role"
    assert parse([*unsafe, "--sidecar-image", mirror]).sidecar_image == mirror
    assert parse(unsafe, {"SIDECRED_SIDECAR_IMAGE": mirror}).sidecar_image == mirror


@pytest.mark.parametrize("value", ["²", "١٢", "6 1080", "0x10"])
def test_non_ascii_and_odd_digits_are_refused(value: str) -> None:
    with pytest.raises(ValueError, match="is not a whole number"):
        parse(["--sidecar-port", value])


def test_the_default_token_audience_is_sidecreds_own() -> None:
    assert Settings().token_audience == "sidecred"
    with pytest.raises(ValueError, match="must differ"):
        parse(["--token-audience", "sidecred-broker"])


def test_sidecar_image_pull_secrets_are_a_comma_separated_list() -> None:
    env = {
        "SIDECRED_SIDECAR_IMAGE_PULL_SECRETS": " registry-corp, registry.mirror-2 ,,registry-corp"
    }
    assert parse([], env).sidecar_image_pull_secrets == ("registry-corp", "registry.mirror-2")
    assert parse(["--sidecar-image-pull-secrets", "own"], env).sidecar_image_pull_secrets == (
        "own",
    )
    assert parse(["--sidecar-image-pull-secrets", ""], env).sidecar_image_pull_secrets == ()
    assert Settings().sidecar_image_pull_secrets == ()


@pytest.mark.parametrize(
    "name", ["Registry-Corp", "registry_corp", "-registry", "registry.", "a" * 254, "a/b"]
)
def test_a_bad_pull_secret_name_stops_the_webhook_at_start(
    name: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SIDECRED_SIDECAR_IMAGE_PULL_SECRETS", f"registry-corp,{name}")
    code = serve_main(["--tls-cert", "/nonexistent/tls.crt", "--tls-key", "/nonexistent/tls.key"])
    err = capsys.readouterr().err
    assert code == 2
    assert f"--sidecar-image-pull-secrets names {name!r}, which is not a Secret name" in err
    assert "registry-corp'" not in err and "Traceback" not in err


def test_sidecar_repositories_and_env_are_read_from_flags_and_env() -> None:
    config = parse(
        ["--sidecar-repositories", "registry.corp.example/sidecred-sidecar, mirror.example/x:1"],
        {
            "SIDECRED_SIDECAR_EXTRA_ENV": '[{"name": "HTTPS_PROXY", "value": "http://p:3128"}]',
            "SIDECRED_SIDECAR_ACCEPTED_ENV": '[{"name": "HTTPS_PROXY", "value": "http://old:3128"}]',
        },
    )
    assert config.sidecar_repository_set == {
        "ghcr.io/sidecred/sidecred-sidecar",
        "registry.corp.example/sidecred-sidecar",
        "mirror.example/x",
    }
    assert config.sidecar_extra_env == (("HTTPS_PROXY", "http://p:3128"),)
    assert config.configured_sidecar_env == {
        ("HTTPS_PROXY", "http://p:3128"),
        ("HTTPS_PROXY", "http://old:3128"),
    }
    # The start log names the env, never its values (a proxy URL may carry a password).
    shown = config.loggable()
    assert shown["sidecar_extra_env"] == ["HTTPS_PROXY"]
    assert "http://p:3128" not in str(shown)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("HTTPS_PROXY=http://p", "is not JSON"),
        ('{"name": "X"}', "is not a JSON list"),
        ('["X"]', "is not an object with a name"),
        (
            '[{"name": "HTTPS_PROXY", "valueFrom": {"secretKeyRef": {"name": "p", "key": "url"}}}]',
            "only literal values are accepted, because a ConfigMap or Secret reference",
        ),
        ('[{"name": "X", "value": 3}]', "is not a string (quote it)"),
        ('[{"name": "X", "value": "1", "other": 1}]', "has keys other than name and value"),
        ('[{"name": "A=B", "value": "1"}]', "is not an env variable name"),
        ('[{"name": "SIDECRED_ROLE_ARN", "value": "arn:x"}]', "a setting the webhook writes"),
        ('[{"name": "X", "value": "1"}, {"name": "X", "value": "2"}]', "sets X more than once"),
    ],
)
def test_bad_sidecar_env_stops_the_webhook_at_start(value: str, fragment: str) -> None:
    with pytest.raises(ValueError, match="--sidecar-extra-env") as caught:
        parse(["--sidecar-extra-env", value])
    assert fragment in str(caught.value)


def test_the_retry_cap_is_the_sidecar_setting_left_to_operators() -> None:
    value = '[{"name": "SIDECRED_RETRY_CAP_SECONDS", "value": "30"}]'
    assert parse(["--sidecar-extra-env", value]).sidecar_extra_env == (
        ("SIDECRED_RETRY_CAP_SECONDS", "30"),
    )


def test_the_readme_lists_every_webhook_option() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme.split("\n## Webhook options\n", 1)[1].split("\n## ", 1)[0]
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    flags = {s for a in parser._actions for s in a.option_strings if s.startswith("--")} - {
        "--help"
    }
    missing = sorted(f for f in flags if f"`{f}`" not in section and f"{f}`" not in section)
    assert not missing, f"options without a row in README.md: {missing}"
