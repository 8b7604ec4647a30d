"""The sidecar as a real process against STS emulators, with a real boto3 app process."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from sidecred.dev.processes import wait_until
from tests.sidecar.sidecar_process import (
    ROLE_ARN,
    WAIT_SECONDS,
    SidecarProcess,
    run_app,
    sidecar_env,
)
from tests.support.scripted_sts import access_denied
from tests.support.sts import MOTO_ACCOUNT_ID, create_role, free_port

SESSION = "shop.web-7d4b9c-x2x9q"
EXPECTED_ARN = f"arn:aws:sts::{MOTO_ACCOUNT_ID}:assumed-role/reader/{SESSION}"


@pytest.fixture(scope="module")
def reader_role(moto_sts_module):
    return create_role(moto_sts_module.url, "reader")


@pytest.mark.parametrize("token_mode", ["file", "env"])
@pytest.mark.parametrize("source", ["web-identity", "assume-role"])
def test_app_sees_the_annotated_role_and_session(
    source, token_mode, moto_sts_module, reader_role, sidecar_factory, tmp_path: Path
):
    assert reader_role == ROLE_ARN
    sidecar = sidecar_factory(
        sidecar_env(tmp_path, moto_sts_module.url, source=source, token_mode=token_mode)
    )
    sidecar.wait_ready()

    app = run_app(sidecar, tmp_path)

    assert app.returncode == 0, app.stderr
    assert app.stdout.split() == [EXPECTED_ARN]
    status, body = sidecar.credentials(sidecar.token())
    assert status == 200
    assert body["RoleArn"] == ROLE_ARN
    assert body["AccountId"] == MOTO_ACCOUNT_ID
    # Log hygiene: neither the credentials nor the auth token reach the log.
    log = sidecar.log()
    for secret in (body["SecretAccessKey"], body["Token"], body["AccessKeyId"], sidecar.token()):
        assert secret not in log
    assert SESSION in log and ROLE_ARN in log
    unsafe = [r for r in sidecar.log_records() if r["event"] == "unsafe_credential_source"]
    assert [r["level"] for r in unsafe] == (["warning"] if source == "assume-role" else [])


def test_token_file_is_the_whole_token_readable_by_any_uid(
    moto_sts_module, sidecar_factory, tmp_path: Path
):
    sidecar = sidecar_factory(sidecar_env(tmp_path, moto_sts_module.url))
    sidecar.wait_ready()
    path = Path(sidecar.env["SIDECRED_TOKEN_FILE"])
    token = path.read_bytes()
    assert len(token) >= 43 and b"\n" not in token and b"\r" not in token
    assert path.stat().st_mode & 0o777 == 0o644
    assert [p.name for p in path.parent.iterdir()] == ["token"]  # no temp file left behind


@pytest.mark.parametrize(
    ("authorization", "expected"), [(None, 401), ("wrong-token", 403), ("", 403)]
)
def test_missing_or_wrong_token_is_refused(
    authorization, expected, moto_sts_module, sidecar_factory, tmp_path: Path
):
    sidecar = sidecar_factory(sidecar_env(tmp_path, moto_sts_module.url))
    sidecar.wait_ready()
    status, body = sidecar.credentials(authorization)
    assert status == expected
    assert set(body) == {"Code", "Message", "code", "message"}


def test_sdk_fetches_credentials_once_for_fifty_calls(
    moto_sts_module, sidecar_factory, tmp_path: Path
):
    sidecar = sidecar_factory(sidecar_env(tmp_path, moto_sts_module.url))
    sidecar.wait_ready()

    app = run_app(sidecar, tmp_path, calls=50)

    assert app.returncode == 0, app.stderr
    assert app.stdout.split() == [EXPECTED_ARN]
    assert sidecar.metric('sidecred_credential_requests_total{role="pod",code="200"}') == 1
    assert sidecar.metric('sidecred_sts_calls_total{role="pod"}') == 1


def test_sts_down_at_start_then_recovers(moto_sts_factory, sidecar_factory, tmp_path: Path):
    port = free_port()  # nothing listens here until moto starts
    sidecar = sidecar_factory(sidecar_env(tmp_path, f"http://127.0.0.1:{port}"))
    wait_until(
        lambda: "sts_failed" in sidecar.log(), timeout=WAIT_SECONDS, what="a failed STS call"
    )

    status, text = sidecar.readyz()
    assert status == 503
    assert f"StsUnreachable: cannot reach http://127.0.0.1:{port}" in text
    status, body = sidecar.credentials(sidecar.token())
    assert status == 503
    assert body["Code"] == body["code"] == "StsUnreachable"
    assert f"127.0.0.1:{port}" in body["Message"] == body["message"]
    assert sidecar.process.poll() is None

    moto_sts_factory(port=port)
    sidecar.wait_ready()
    assert sidecar.credentials(sidecar.token())[0] == 200


def test_sts_down_after_start_keeps_serving(moto_sts_factory, sidecar_factory, tmp_path: Path):
    moto = moto_sts_factory()
    sidecar = sidecar_factory(sidecar_env(tmp_path, moto.url))
    sidecar.wait_ready()
    first = sidecar.credentials(sidecar.token())

    moto.stop()

    assert sidecar.credentials(sidecar.token()) == first
    assert first[0] == 200
    assert sidecar.readyz()[0] == 200


def test_sts_refusal_keeps_sidecar_up_and_reports_why(
    scripted_sts_factory, sidecar_factory, tmp_path: Path
):
    sts = scripted_sts_factory(access_denied)
    sidecar = sidecar_factory(sidecar_env(tmp_path, sts.url))
    wait_until(
        lambda: len(sts.calls) >= 2, timeout=WAIT_SECONDS, what="STS retried after a refusal"
    )

    assert sidecar.process.poll() is None
    status, text = sidecar.readyz()
    assert status == 503
    assert "AccessDenied" in text and "Not authorized" in text
    status, body = sidecar.credentials(sidecar.token())
    assert status == 503
    assert body["Code"] == body["code"] == "AccessDenied"
    assert "Not authorized to perform sts:AssumeRoleWithWebIdentity" in body["Message"]
    failures = [r for r in sidecar.log_records() if r["event"] == "sts_failed"]
    assert failures and "Not authorized" in str(failures[0]["error"])
    assert sts.calls[0]["Action"] == "AssumeRoleWithWebIdentity"
    assert sts.calls[0]["RoleSessionName"] == SESSION
    assert sts.calls[0]["WebIdentityToken"].startswith("eyJ")


def test_invalid_config_exits_2_naming_every_problem(sidecar_factory, tmp_path: Path):
    env = sidecar_env(tmp_path, "http://127.0.0.1:1", SIDECRED_PORT="http", SIDECRED_TOKEN_MODE="x")
    del env["SIDECRED_ROLE_ARN"]
    sidecar = sidecar_factory(env)
    assert sidecar.process.wait(timeout=60) == 2
    records = sidecar.log_records()
    assert len(records) == 1 and records[0]["event"] == "config_invalid"
    for name in ("SIDECRED_ROLE_ARN", "SIDECRED_PORT", "SIDECRED_TOKEN_MODE"):
        assert name in str(records[0]["error"])


def test_sigterm_native_mode_exits_0(moto_sts_module, sidecar_factory, tmp_path: Path):
    sidecar = sidecar_factory(sidecar_env(tmp_path, moto_sts_module.url))
    sidecar.wait_ready()
    sidecar.signal(signal.SIGTERM)
    assert sidecar.process.wait(timeout=30) == 0
    assert sidecar.log_records()[-1]["event"] == "stopped"


def terminated_in_container_mode(
    sidecar_factory, tmp_path: Path, sts_url: str, drain_seconds: str
) -> SidecarProcess:
    """A container-mode sidecar, ready, then sent SIGTERM (its drain has begun)."""
    env = sidecar_env(
        tmp_path, sts_url, SIDECRED_SIDECAR_MODE="container", SIDECRED_DRAIN_SECONDS=drain_seconds
    )
    sidecar = sidecar_factory(env)
    sidecar.wait_ready()
    sidecar.signal(signal.SIGTERM)
    return sidecar


def test_sigterm_container_mode_serves_during_drain(
    moto_sts_module, sidecar_factory, tmp_path: Path
):
    sidecar = terminated_in_container_mode(sidecar_factory, tmp_path, moto_sts_module.url, "600")
    wait_until(
        lambda: '"event":"draining"' in sidecar.log(),
        timeout=WAIT_SECONDS,
        what="the drain to start",
    )

    assert sidecar.credentials(sidecar.token())[0] == 200
    assert sidecar.process.poll() is None
    # A second signal ends the drain early.
    sidecar.signal(signal.SIGTERM)
    assert sidecar.process.wait(timeout=30) == 0


def test_container_mode_drain_ends_by_itself(moto_sts_module, sidecar_factory, tmp_path: Path):
    sidecar = terminated_in_container_mode(sidecar_factory, tmp_path, moto_sts_module.url, "0.5")
    assert sidecar.process.wait(timeout=30) == 0
    events = [r["event"] for r in sidecar.log_records()]
    assert events[-2:] == ["draining", "stopped"]
