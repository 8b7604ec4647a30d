"""A scripted credential broker: HTTPS on loopback speaking the broker's wire contract.

Certificates come from `sidecred.certs` (a CA, and a serving certificate for
`localhost`). A test chooses each answer (`broker.answer = ...`) and reads the
requests it received. The real `sidecred broker` is tested on its own; this
stands in for it where the sidecar's side is under test.
"""

from __future__ import annotations

import datetime as dt
import json
import ssl
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sidecred.certs.generate import (
    IssuedCertificate,
    build_ca,
    build_serving_certificate,
    certificate_pem,
    private_key_pem,
)
from tests.support.loopback_http import LoopbackServers, PostAnswer

BROKER_ROLE_ARN = "arn:aws:iam::123456789012:role/reader"
Answer = Callable[[], tuple[int, dict[str, Any]]]


def credentials_answer(expires_in: float = 3600.0) -> tuple[int, dict[str, Any]]:
    """A 200 with the broker's credentials JSON, expiring `expires_in` seconds from now."""
    expires = datetime.now(UTC) + timedelta(seconds=expires_in)
    return 200, {
        "AccessKeyId": "ASIABROKERKEY0000001",
        "SecretAccessKey": "brokerSecretKey000000000000000000000001",
        "Token": "brokerSessionToken0001",
        "Expiration": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "AccountId": "123456789012",
        "RoleArn": BROKER_ROLE_ARN,
    }


def error_answer(status: int, code: str, message: str) -> tuple[int, dict[str, Any]]:
    return status, {"Code": code, "Message": message, "code": code, "message": message}


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class ScriptedBroker:
    url: str
    ca_pem: str
    answer: Answer = credentials_answer
    received: list[Received] = field(default_factory=list)


def issue_localhost_certificate(
    ca: IssuedCertificate | None = None,
) -> tuple[IssuedCertificate, IssuedCertificate]:
    """(CA, serving certificate for localhost signed by it)."""
    now = dt.datetime.now(dt.UTC)
    ca = ca or build_ca("scripted-broker-ca", now, 1)
    return ca, build_serving_certificate(ca, "localhost", "test", now, 1)


def _answer(state: ScriptedBroker) -> PostAnswer:
    def answer(path: str, headers: dict[str, str], body: bytes) -> tuple[int, str, bytes]:
        state.received.append(Received("POST", path, headers, body))
        status, payload = state.answer()
        return status, "application/json", json.dumps(payload).encode()

    return answer


@pytest.fixture
def scripted_broker_factory(tmp_path: Path) -> Iterator[Callable[..., ScriptedBroker]]:
    """Start scripted brokers (`factory()` or `factory(certs)`); all stopped at teardown."""
    servers = LoopbackServers()

    def start(certs: tuple[IssuedCertificate, IssuedCertificate] | None = None) -> ScriptedBroker:
        ca, serving = certs or issue_localhost_certificate()
        directory = Path(tempfile.mkdtemp(dir=tmp_path))
        (directory / "tls.crt").write_bytes(certificate_pem(serving.certificate))
        (directory / "tls.key").write_bytes(private_key_pem(serving.key))
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(directory / "tls.crt", directory / "tls.key")
        state = ScriptedBroker(url="", ca_pem=certificate_pem(ca.certificate).decode())
        state.url = f"https://localhost:{servers.start(_answer(state), context)}"
        return state

    yield start
    servers.stop_all()
