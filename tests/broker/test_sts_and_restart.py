"""What the broker sends STS, how an STS failure reaches the caller; restart, readiness, TLS rotation."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sidecred.dev.kube_stub import KubeApiStub
from sidecred.dev.processes import wait_until
from sidecred.dev.token_review import TokenAuthority
from tests.support.scripted_sts import Behaviour, ScriptedSts, error_xml, success_xml
from tests.support.scripted_sts import scripted_sts_factory as scripted_sts_factory  # fixture

from .broker_process import BROKER_HOST, BrokerProcess, issue_certificates, restart, start_broker
from .conftest import start_stub
from .pods import READER, broker_pod

pytestmark = pytest.mark.slow


@dataclass
class Setup:
    """The API stub, a chosen STS, and a broker started against them on demand."""

    tmp: Path
    stub: KubeApiStub
    authority: TokenAuthority
    sts_factory: Callable[[Behaviour], ScriptedSts]
    brokers: list[BrokerProcess]

    def start(self, behaviour: Behaviour, **pod: Any) -> tuple[ScriptedSts, BrokerProcess, str]:
        """An STS with `behaviour`, a broker using it, and a token of a new pod."""
        sts = self.sts_factory(behaviour)
        broker = start_broker(self.tmp, self.stub.url, sts.url)
        self.brokers.append(broker)
        made = self.stub.put("pods", broker_pod(config=broker.config, **pod))
        return sts, broker, self.authority.pod_token(made)


@pytest.fixture
def setup(
    tmp_path: Path, scripted_sts_factory: Callable[[Behaviour], ScriptedSts]
) -> Iterator[Setup]:
    stub, authority = start_stub()
    world = Setup(tmp_path, stub, authority, scripted_sts_factory, [])
    yield world
    for broker in world.brokers:
        broker.stop()
    stub.stop()


def answer(params: dict[str, str]) -> tuple[int, str]:
    return 200, success_xml(params)


def test_assume_role_carries_session_name_source_identity_external_id_and_tags(
    setup: Setup,
) -> None:
    """A session-name annotation that names another namespace's pod sets the suffix of the
    session name only; the source identity stays the pod's own `<namespace>.<pod>`."""
    notes = {
        "iam.amazonaws.com/external-id": "shop-ext-1",
        "sidecred.dev/session-duration": "7200",
        "iam.amazonaws.com/session-name": "prod.payments-api-0",
    }
    sts, broker, token = setup.start(answer, name="api-0", annotations=notes)
    response = broker.issue(token)
    assert response.status_code == 200, response.text
    [call] = sts.calls
    uid = setup.stub.get("pods", "api-0", "shop")["metadata"]["uid"]
    assert {k: v for k, v in call.items() if not k.startswith("Tags.")} == {
        "Action": "AssumeRole",
        "Version": "2011-06-15",
        "RoleArn": READER,
        "RoleSessionName": "shop.prod.payments-api-0",
        "SourceIdentity": "shop.api-0",
        "ExternalId": "shop-ext-1",
        "DurationSeconds": "7200",
    }
    tags = {call[f"Tags.member.{i}.Key"]: call[f"Tags.member.{i}.Value"] for i in range(1, 5)}
    assert tags == {
        "kubernetes-namespace": "shop",
        "kubernetes-pod-name": "api-0",
        "kubernetes-pod-uid": uid,
        "kubernetes-service-account": "web",
    }


def test_an_sts_refusal_is_503_with_its_code_and_message(setup: Setup) -> None:
    denied = error_xml("AccessDenied", "User is not authorized to perform: sts:AssumeRole")
    _, broker, token = setup.start(lambda params: (403, denied), name="api-1")
    response = broker.issue(token)
    assert response.status_code == 503
    body = response.json()
    assert body["Code"] == body["code"] == "AccessDenied"
    assert "not authorized to perform: sts:AssumeRole" in body["message"]
    assert broker.metric("sidecred_broker_sts_calls_total", result="AccessDenied") == 1


def test_a_restarted_broker_serves_the_same_pods(setup: Setup) -> None:
    sts, broker, token = setup.start(answer, name="api-2")
    assert broker.issue(token).status_code == 200
    reviews = setup.stub.requests["tokenreviews.create"]
    setup.brokers[-1] = broker = restart(broker, setup.tmp)
    # Nothing survives a restart but the pods' tokens: a new list and STS call. The pod is
    # in the listed cache once the broker is ready, so the token needs no review.
    assert broker.issue(token).status_code == 200
    assert setup.stub.requests["tokenreviews.create"] == reviews
    assert len(sts.calls) == 2


def test_not_ready_until_the_caches_have_synced(setup: Setup) -> None:
    setup.stub.stop()
    broker = start_broker(setup.tmp, setup.stub.url, "http://127.0.0.1:9", wait=False)
    setup.brokers.append(broker)
    response = broker.readyz()
    assert response is not None and response.status_code == 503
    assert "cache has not synced" in response.json()["reason"]
    setup.stub.start()
    wait_until(broker.ready, timeout=60, what="ready once the API server answers")


def serving_certificate(broker: BrokerProcess) -> bytes:
    """The certificate a new handshake gets (DER), verified against the CA on disk now."""
    context = ssl.create_default_context(cafile=str(broker.cert_dir / "ca.crt"))
    with socket.create_connection(("127.0.0.1", broker.port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=BROKER_HOST) as tls:
            return tls.getpeercert(binary_form=True) or b""


def test_a_rotated_certificate_is_served_without_a_restart(setup: Setup) -> None:
    _, broker, token = setup.start(answer, name="api-3")
    before = serving_certificate(broker)
    issue_certificates(broker.cert_dir, force=True)  # a new serving certificate

    def rotated() -> bool:
        try:
            return serving_certificate(broker) != before
        except ssl.SSLCertVerificationError:
            return False  # caught between the CA and the certificate being replaced

    wait_until(rotated, timeout=30, what="the rotated certificate")
    assert broker.issue(token).status_code == 200  # verified against the new CA
    assert broker.process.poll() is None
