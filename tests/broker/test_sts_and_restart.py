"""What the broker sends STS, what an STS failure looks like to the caller, and restarts."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sidecred.dev.kube_stub import KubeApiStub
from sidecred.dev.token_review import TokenAuthority
from tests.sidecar.fault_sts import Behaviour, FaultSts, error_xml, success_xml
from tests.sidecar.fault_sts import fault_sts_factory as fault_sts_factory  # the fixture

from .broker_process import restart, start_broker
from .conftest import start_stub
from .pods import READER, broker_pod


@pytest.fixture
def cluster_stub() -> Iterator[tuple[KubeApiStub, TokenAuthority]]:
    stub, authority = start_stub()
    yield stub, authority
    stub.stop()


def test_assume_role_carries_session_name_source_identity_external_id_and_tags(
    tmp_path: Path,
    cluster_stub: tuple[KubeApiStub, TokenAuthority],
    fault_sts_factory: Callable[[Behaviour], FaultSts],
) -> None:
    stub, authority = cluster_stub
    sts = fault_sts_factory(lambda params: (200, success_xml(params)))
    pod = stub.put(
        "pods",
        broker_pod(
            "api-0",
            annotations={
                "iam.amazonaws.com/external-id": "shop-ext-1",
                "sidecred.dev/session-duration": "7200",
            },
        ),
    )
    broker = start_broker(tmp_path, stub.url, sts.url)
    try:
        response = broker.issue(authority.pod_token(pod))
    finally:
        broker.stop()
    assert response.status_code == 200, response.text
    [call] = sts.calls
    uid = pod["metadata"]["uid"]
    assert {k: v for k, v in call.items() if not k.startswith("Tags.")} == {
        "Action": "AssumeRole",
        "Version": "2011-06-15",
        "RoleArn": READER,
        "RoleSessionName": "shop.api-0",
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


def test_an_sts_refusal_is_503_with_its_code_and_message(
    tmp_path: Path,
    cluster_stub: tuple[KubeApiStub, TokenAuthority],
    fault_sts_factory: Callable[[Behaviour], FaultSts],
) -> None:
    stub, authority = cluster_stub
    denied = error_xml("AccessDenied", "User is not authorized to perform: sts:AssumeRole")
    sts = fault_sts_factory(lambda params: (403, denied))
    pod = stub.put("pods", broker_pod("api-1"))
    broker = start_broker(tmp_path, stub.url, sts.url)
    try:
        response = broker.issue(authority.pod_token(pod))
        failed = broker.metric("sidecred_broker_sts_calls_total", result="AccessDenied")
    finally:
        broker.stop()
    assert response.status_code == 503
    body = response.json()
    assert body["Code"] == body["code"] == "AccessDenied"
    assert "not authorized to perform: sts:AssumeRole" in body["message"]
    assert failed == 1


def test_a_restarted_broker_serves_the_same_pods(
    tmp_path: Path,
    cluster_stub: tuple[KubeApiStub, TokenAuthority],
    fault_sts_factory: Callable[[Behaviour], FaultSts],
) -> None:
    stub, authority = cluster_stub
    sts = fault_sts_factory(lambda params: (200, success_xml(params)))
    pod = stub.put("pods", broker_pod("api-2"))
    token = authority.pod_token(pod)
    broker = start_broker(tmp_path, stub.url, sts.url)
    try:
        assert broker.issue(token).status_code == 200
        broker = restart(broker, tmp_path)
        # Nothing survives a restart but the pods' tokens: a new review, list and STS call.
        assert broker.issue(token).status_code == 200
    finally:
        broker.stop()
    assert stub.requests["tokenreviews.create"] == 2
    assert len(sts.calls) == 2
