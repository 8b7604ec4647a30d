"""The broker's pod events: a refused pod gets one Warning, a restored one a Normal.

Events are posted by one background thread in the order they were decided, and
the decision is made before the refusal is answered. So once an event decided
later (for a barrier pod) is stored, every earlier one that was going to be
posted has been: that is how "exactly one" is checked without sleeping.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sidecred.dev.kube_stub import KubeApiStub, json_response, status_object
from sidecred.dev.processes import wait_until
from sidecred.kube.events import AVAILABLE, EVENT_LABEL, UNAVAILABLE

from .broker_process import BrokerProcess, start_broker
from .conftest import Cluster
from .pods import POLICY, READER

_namespaces = itertools.count(1)
REVOKED = {"iam.amazonaws.com/permitted": "arn:aws:iam::123456789012:role/other-.*"}
DENIED_NAMESPACE = "events-denied"


def fresh_namespace(stub: KubeApiStub) -> str:
    name = f"events-{next(_namespaces)}"
    stub.add_namespace(name, POLICY)
    return name


def pod_events(stub: KubeApiStub, pod: dict[str, Any]) -> list[dict[str, Any]]:
    uid = pod["metadata"]["uid"]
    return [
        e
        for e in stub.items("events", pod["metadata"]["namespace"])
        if e["involvedObject"]["uid"] == uid
    ]


def reasons(stub: KubeApiStub, pod: dict[str, Any]) -> list[str]:
    return [e["reason"] for e in pod_events(stub, pod)]


def revoke(cluster: Cluster, broker: BrokerProcess, namespace: str, token: str) -> Any:
    cluster.stub.set_annotations(namespace, REVOKED)
    return wait_for_code(broker, token, "RoleNotPermitted")


def wait_for_code(broker: BrokerProcess, token: str, code: str) -> Any:
    answers: list[Any] = []

    def refused() -> bool:
        answers.append(broker.issue(token))
        return answers[-1].status_code == 403 and answers[-1].json()["code"] == code

    wait_until(refused, timeout=20, what=f"the broker to refuse with {code}")
    return answers[-1]


def drain(cluster: Cluster, broker: BrokerProcess) -> None:
    """Refuse a barrier pod and wait for its event: every event decided before it is posted."""
    namespace = fresh_namespace(cluster.stub)
    pod, token = cluster.add_pod("barrier", namespace_name=namespace, config=broker.config)
    revoke(cluster, broker, namespace, token)
    wait_until(lambda: reasons(cluster.stub, pod) == [UNAVAILABLE], timeout=20, what="barrier")


def test_a_revoked_pod_gets_one_warning_naming_namespace_role_and_annotation(
    cluster: Cluster,
) -> None:
    namespace = fresh_namespace(cluster.stub)
    pod, token = cluster.add_pod(namespace_name=namespace)
    assert cluster.broker.issue(token).status_code == 200
    answer = revoke(cluster, cluster.broker, namespace, token)
    for _ in range(4):
        assert cluster.broker.issue(token).json()["code"] == "RoleNotPermitted"
    assert cluster.broker.issue("not-a-token").status_code == 401
    drain(cluster, cluster.broker)

    (event,) = pod_events(cluster.stub, pod)
    assert (event["type"], event["reason"]) == ("Warning", UNAVAILABLE)
    assert answer.json()["message"] in event["message"]
    for named in (f'namespace "{namespace}"', READER, "iam.amazonaws.com/permitted"):
        assert named in event["message"]
    assert event["metadata"]["labels"] == {EVENT_LABEL: "true"}
    assert event["involvedObject"]["name"] == pod["metadata"]["name"]
    assert event["reportingComponent"] == "sidecred.dev/broker"
    assert token not in str(event)


def test_restoring_the_role_posts_one_available_event(cluster: Cluster) -> None:
    namespace = fresh_namespace(cluster.stub)
    pod, token = cluster.add_pod(namespace_name=namespace)
    revoke(cluster, cluster.broker, namespace, token)
    cluster.stub.set_annotations(namespace, POLICY)
    cluster.wait_for_status(token, 200, "the restored role to be issued")
    assert cluster.broker.issue(token).status_code == 200
    drain(cluster, cluster.broker)

    assert reasons(cluster.stub, pod) == [UNAVAILABLE, AVAILABLE]
    available = pod_events(cluster.stub, pod)[1]
    assert available["type"] == "Normal"
    assert READER in available["message"]


def test_a_pod_never_refused_gets_no_event(cluster: Cluster) -> None:
    namespace = fresh_namespace(cluster.stub)
    pod, token = cluster.add_pod(namespace_name=namespace)
    assert cluster.broker.issue(token).status_code == 200
    drain(cluster, cluster.broker)
    assert reasons(cluster.stub, pod) == []


@pytest.fixture(scope="module")
def quiet_broker(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:  # fmt: skip
    tmp: Path = tmp_path_factory.mktemp("quiet-broker")
    (tmp / "tls").symlink_to(cluster.broker.cert_dir)
    broker = start_broker(tmp, cluster.stub.url, cluster.sts.url, "--no-events")
    try:
        yield broker
    finally:
        broker.stop()


def test_no_events_posts_none(cluster: Cluster, quiet_broker: BrokerProcess) -> None:
    namespace = fresh_namespace(cluster.stub)
    pod, token = cluster.add_pod(namespace_name=namespace, config=quiet_broker.config)
    revoke(cluster, quiet_broker, namespace, token)
    # The broker that posts events refuses the same pod (its sidecar points at the other
    # broker): that event is the barrier, and the only one.
    assert cluster.broker.issue(token).json()["code"] == "NoCanonicalSidecar"
    wait_until(lambda: reasons(cluster.stub, pod) != [], timeout=20, what="the barrier event")
    (event,) = pod_events(cluster.stub, pod)
    assert event["reportingComponent"] == "sidecred.dev/broker"
    assert "NoCanonicalSidecar" in event["message"]
    assert quiet_broker.metric("sidecred_pod_events_total", reason=UNAVAILABLE) == 0


def test_an_api_server_refusing_the_event_leaves_the_403(cluster: Cluster) -> None:
    forbidden = status_object(403, "Forbidden", "events is forbidden", kind="events")
    cluster.stub.route(
        "POST",
        rf"/api/v1/namespaces/{DENIED_NAMESPACE}/events",
        lambda _: json_response(403, forbidden),
        counter="events.forbidden",
    )
    cluster.stub.add_namespace(DENIED_NAMESPACE, POLICY)
    pod, token = cluster.add_pod(namespace_name=DENIED_NAMESPACE)
    before = cluster.broker.metric("sidecred_pod_event_errors_total")
    answer = revoke(cluster, cluster.broker, DENIED_NAMESPACE, token)
    assert answer.json()["code"] == "RoleNotPermitted"
    wait_until(
        lambda: cluster.broker.metric("sidecred_pod_event_errors_total") > before,
        timeout=20,
        what="the refused event to be counted",
    )
    # A failed post is not remembered: the next refusal tries again, and is still a 403.
    again = cluster.broker.issue(token)
    assert (again.status_code, again.json()["code"]) == (403, "RoleNotPermitted")
    wait_until(
        lambda: cluster.broker.metric("sidecred_pod_event_errors_total") > before + 1,
        timeout=20,
        what="the retried event to be counted",
    )
    assert reasons(cluster.stub, pod) == []
    assert "could not post event CredentialsUnavailable" in cluster.broker.log()
    assert "Traceback" not in cluster.broker.log()


def test_a_replaced_pod_gets_no_event(cluster: Cluster) -> None:
    namespace = fresh_namespace(cluster.stub)
    pod, token = cluster.add_pod(namespace_name=namespace)
    assert cluster.broker.issue(token).status_code == 200  # the review is now cached
    metadata = {k: v for k, v in pod["metadata"].items() if k != "uid"}
    cluster.stub.delete("pods", metadata["name"], namespace)
    replacement = cluster.stub.put("pods", dict(pod, metadata=metadata))
    wait_for_code(cluster.broker, token, "PodReplaced")
    drain(cluster, cluster.broker)
    assert reasons(cluster.stub, pod) == reasons(cluster.stub, replacement) == []
