"""The broker source (what `sidecred fetch` runs in broker mode) against a scripted broker over TLS."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sidecred.dev.processes import wait_until
from sidecred.sidecar.broker_client import broker_endpoint, fetch_from_broker
from sidecred.sidecar.config import load_config
from sidecred.sidecar.credentials import SourceError
from sidecred.sidecar.fetch import fetch_credentials, role_config
from tests.sidecar.sidecar_process import WAIT_SECONDS, sidecar_env
from tests.support.scripted_broker import (
    BROKER_ROLE_ARN,
    ScriptedBroker,
    credentials_answer,
    error_answer,
    issue_localhost_certificate,
)

pytestmark = pytest.mark.slow


def broker_env(tmp_path: Path, broker: ScriptedBroker, **overrides: str) -> dict[str, str]:
    """The env the webhook writes for a broker-mode sidecar pointed at `broker`."""
    webhook = {"broker_url": broker.url, "broker_ca": broker.ca_pem}
    # STS is never called in broker mode: its URL is a closed port.
    return sidecar_env(
        tmp_path, "http://127.0.0.1:9", source="broker", webhook=webhook, **overrides
    )


def broker_config(tmp_path: Path, broker: ScriptedBroker, **extra: str):
    return load_config(broker_env(tmp_path, broker, **extra))


def test_posts_the_fresh_projected_token_and_no_body(scripted_broker_factory, tmp_path: Path):
    broker = scripted_broker_factory()
    config = broker_config(tmp_path, broker)
    token_file = Path(config.broker_token_file or "")
    projected = token_file.read_text().strip()  # what the kubelet (here the local runner) wrote
    creds = fetch_from_broker(config)
    assert creds.role_arn == BROKER_ROLE_ARN and creds.account_id == "123456789012"
    assert creds.access_key_id == "ASIABROKERKEY0000001"
    token_file.write_text("rotated-token")
    fetch_from_broker(config)
    first, second = broker.received
    assert (first.method, first.path, first.body) == ("POST", "/v1/credentials", b"")
    assert first.headers["authorization"] == f"Bearer {projected}"
    assert second.headers["authorization"] == "Bearer rotated-token"


def test_a_containers_role_is_asked_for_by_container(scripted_broker_factory, tmp_path: Path):
    broker = scripted_broker_factory()
    backup = "arn:aws:iam::123456789012:role/backup"
    roles = {
        "backup": {
            "role_arn": backup,
            "session_name": "shop.web.backup",
            "token_file": str(tmp_path / "b"),
        }
    }
    env = broker_env(tmp_path, broker, SIDECRED_CONTAINER_ROLES=json.dumps(roles))
    config = role_config(load_config(env), "backup")
    creds = fetch_credentials(config, "backup")
    assert creds.role_arn == backup  # what the broker issued is served as the container's role
    (received,) = broker.received
    assert received.path == "/v1/credentials?container=backup" and received.body == b""


@pytest.mark.parametrize(
    ("status", "code", "refused"),
    [(403, "RoleNotPermitted", True), (401, "Unauthorized", False), (503, "Throttling", False)],
)
def test_errors_carry_the_brokers_code_and_message(
    status, code, refused, scripted_broker_factory, tmp_path: Path
):
    broker = scripted_broker_factory()
    message = f'role "{BROKER_ROLE_ARN}" is not permitted in namespace "shop" ({status})'
    broker.answer = lambda: error_answer(status, code, message)
    with pytest.raises(SourceError) as err:
        fetch_from_broker(broker_config(tmp_path, broker))
    assert (err.value.code, err.value.message, err.value.refused) == (code, message, refused)


def test_an_answer_without_json_is_named_by_its_status(scripted_broker_factory, tmp_path: Path):
    broker = scripted_broker_factory()
    broker.answer = lambda: (502, [])  # type: ignore[assignment,return-value]
    with pytest.raises(SourceError) as err:
        fetch_from_broker(broker_config(tmp_path, broker))
    assert err.value.code == "BrokerHttp502"


def test_an_answer_lacking_fields_is_refused(scripted_broker_factory, tmp_path: Path):
    broker = scripted_broker_factory()
    broker.answer = lambda: (200, {"AccessKeyId": "ASIA1", "Expiration": "2030-01-01T00:00:00Z"})
    with pytest.raises(SourceError) as err:
        fetch_from_broker(broker_config(tmp_path, broker))
    assert err.value.code == "BrokerAnswerInvalid"
    assert "SecretAccessKey, Token" in err.value.message


def test_a_certificate_from_another_ca_is_refused(scripted_broker_factory, tmp_path: Path):
    broker = scripted_broker_factory()
    other = scripted_broker_factory()  # same name, another CA
    config = broker_config(tmp_path, broker, SIDECRED_BROKER_CA=other.ca_pem)
    with pytest.raises(SourceError) as err:
        fetch_from_broker(config)
    assert err.value.code == "BrokerCertificateInvalid"
    assert broker.received == []


def test_the_hostname_is_verified(scripted_broker_factory, tmp_path: Path):
    broker = scripted_broker_factory(issue_localhost_certificate())
    # The certificate names localhost; 127.0.0.1 is the same server under a name it lacks.
    config = broker_config(
        tmp_path, broker, SIDECRED_BROKER_URL=broker.url.replace("localhost", "127.0.0.1")
    )
    with pytest.raises(SourceError) as err:
        fetch_from_broker(config)
    assert err.value.code == "BrokerCertificateInvalid"
    assert "127.0.0.1" in err.value.message
    assert broker.received == []


def test_unreadable_token_makes_no_call(scripted_broker_factory, tmp_path: Path):
    broker = scripted_broker_factory()
    config = broker_config(tmp_path, broker)
    Path(config.broker_token_file or "").unlink()
    with pytest.raises(SourceError) as err:
        fetch_from_broker(config)
    assert err.value.code == "BrokerTokenUnreadable"
    assert broker.received == []


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://broker.sidecred.svc:8444", ("broker.sidecred.svc", 8444, "/v1/credentials")),
        ("https://broker/", ("broker", 443, "/v1/credentials")),
        ("https://broker/v1/credentials", ("broker", 443, "/v1/credentials")),
        ("https://broker/prefix", ("broker", 443, "/prefix/v1/credentials")),
    ],
)
def test_broker_endpoint(url, expected):
    assert broker_endpoint(url) == expected


def test_plain_http_broker_is_refused_by_the_config(tmp_path: Path):
    env = sidecar_env(
        tmp_path,
        "http://127.0.0.1:9",
        source="broker",
        SIDECRED_BROKER_URL="http://broker:8444",
        SIDECRED_BROKER_CA="not pem",
    )
    env.pop("SIDECRED_BROKER_TOKEN_FILE", None)  # every problem is reported at once
    with pytest.raises(ValueError) as err:
        load_config(env)
    text = str(err.value)
    assert "SIDECRED_BROKER_URL='http://broker:8444' is not an https:// URL" in text
    assert "SIDECRED_BROKER_CA holds no PEM certificate" in text
    assert "SIDECRED_BROKER_TOKEN_FILE is not set" in text


def test_sidecar_in_broker_mode_serves_then_reports_a_revocation(
    scripted_broker_factory, sidecar_factory, tmp_path: Path
):
    """The real sidecar process: broker credentials served, then a 403 at a refresh."""
    broker = scripted_broker_factory()
    # 24 s credentials: the first refresh comes within seconds.
    broker.answer = lambda: credentials_answer(expires_in=24)
    env = broker_env(tmp_path, broker)
    sidecar = sidecar_factory(env)
    sidecar.wait_ready()
    held = sidecar.credentials(sidecar.token())
    assert held[0] == 200 and held[1]["AccessKeyId"] == "ASIABROKERKEY0000001"
    assert held[1]["RoleArn"] == env["SIDECRED_ROLE_ARN"]

    message = (
        f'sidecred: role "{BROKER_ROLE_ARN}" is not permitted in namespace "shop": '
        'iam.amazonaws.com/permitted="arn:aws:iam::123456789012:role/shop-.*"'
    )
    broker.answer = lambda: error_answer(403, "RoleNotPermitted", message)
    wait_until(
        lambda: sidecar.readyz()[0] == 503,
        timeout=WAIT_SECONDS,
        what=f"not ready after the broker's 403; log:\n{sidecar.log()}",
    )
    status, readyz = sidecar.readyz()
    assert f"not ready: RoleNotPermitted: {message}" in readyz
    assert sidecar.credentials(sidecar.token()) == held  # still valid, still served
    failed = [r for r in sidecar.log_records() if r["event"] == "sts_failed"]
    assert failed[0]["code"] == "RoleNotPermitted" and failed[0]["error"] == message
    assert failed[0]["refused"] is True

    # Once the held credentials expire, the 503 body carries the broker's reason.
    wait_until(
        lambda: sidecar.credentials(sidecar.token())[0] == 503, timeout=WAIT_SECONDS, what="expiry"
    )
    status, body = sidecar.credentials(sidecar.token())
    assert status == 503 and body["Code"] == "RoleNotPermitted" and message in body["Message"]

    broker.answer = credentials_answer
    sidecar.wait_ready()
    assert all(r.headers["authorization"].startswith("Bearer eyJ") for r in broker.received)
