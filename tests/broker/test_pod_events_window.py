"""The broker's event rate: one Warning per pod per window per replica, again after the window.

RefusalEvents runs in-process with a clock the test moves, posting through the
real kubernetes client to the API stub; `stop()` waits for the posts queued.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry

from sidecred.broker.authorise import Caller
from sidecred.broker.pod_events import RefusalEvents
from sidecred.dev.kube_stub import KubeApiStub
from sidecred.kube.events import AVAILABLE, RATE_LIMIT_SECONDS, UNAVAILABLE, EventMetrics
from sidecred.pods.refusal import Refusal
from tests.events.conftest import core_api

from .pods import broker_pod

POD = broker_pod("web-1", uid="uid-1")
CALLER = Caller("shop", "web", "web-1", "uid-1")
REVOKED = Refusal(
    "RoleNotPermitted", 'sidecred: role "r" is not permitted in namespace "shop"', 403
)


@pytest.fixture
def stub() -> Iterator[KubeApiStub]:
    stub = KubeApiStub()
    stub.add_namespace("shop")
    stub.start()
    try:
        yield stub
    finally:
        stub.stop()


def run(stub: KubeApiStub, steps: list[tuple[float, Refusal | None]]) -> list[str]:
    """Replay (time, refusal or None for an issuance) steps; the reasons posted, in order."""
    now = [0.0]
    events = RefusalEvents(core_api(stub.url), EventMetrics(CollectorRegistry()), "broker-0", clock=lambda: now[0])  # fmt: skip
    for at, refusal in steps:
        now[0] = at
        if refusal is None:
            events.issued(CALLER, POD)
        else:
            events.refused(CALLER, POD, refusal)
    events.stop()
    posted = sorted(stub.items("events", "shop"), key=lambda e: e["eventTime"])
    return [e["reason"] for e in posted]


def test_one_warning_per_window_then_another(stub: KubeApiStub) -> None:
    late = RATE_LIMIT_SECONDS + 1
    steps = [(0, REVOKED), (10, REVOKED), (RATE_LIMIT_SECONDS - 1, REVOKED), (late, REVOKED)]  # fmt: skip
    assert run(stub, steps) == [UNAVAILABLE, UNAVAILABLE]


def test_available_only_after_a_warning_and_only_once(stub: KubeApiStub) -> None:
    steps = [(0, None), (1, REVOKED), (2, None), (3, None)]
    assert run(stub, steps) == [UNAVAILABLE, AVAILABLE]


def test_401s_and_other_pods_post_nothing(stub: KubeApiStub) -> None:
    unauthenticated = Refusal("InvalidToken", "sidecred broker: the token is not valid", 401)
    other = Caller("shop", "web", "web-1", "uid-2")  # the token names another uid
    events = RefusalEvents(core_api(stub.url), EventMetrics(CollectorRegistry()), "broker-0")
    events.refused(CALLER, POD, unauthenticated)
    events.refused(other, POD, REVOKED)
    events.refused(CALLER, None, REVOKED)
    events.stop()
    assert stub.items("events", "shop") == []


def test_a_container_roles_refusal_names_the_container_and_is_tracked_apart(
    stub: KubeApiStub,
) -> None:
    """backup's own role refused while the pod's role keeps being issued: one Warning naming
    backup and its role, and no Normal event until backup's role is issued again."""
    pod = broker_pod(
        "web-2",
        uid="uid-2",
        containers=("app", "backup"),
        annotations={"sidecred.dev/container-roles": '{"backup": "shop-backup"}'},
    )
    caller = Caller("shop", "web", "web-2", "uid-2")
    backup_role = "arn:aws:iam::123456789012:role/shop-backup"
    now = [0.0]
    events = RefusalEvents(core_api(stub.url), EventMetrics(CollectorRegistry()), "broker-0", clock=lambda: now[0])  # fmt: skip
    events.refused(caller, pod, REVOKED, "backup")
    now[0] = 1
    events.issued(caller, pod)  # the pod's role: no recovery of backup's
    now[0] = 2
    events.issued(caller, pod, "backup")
    events.stop()
    posted = sorted(stub.items("events", "shop"), key=lambda e: e["eventTime"])
    assert [e["reason"] for e in posted] == [UNAVAILABLE, AVAILABLE]
    assert posted[0]["message"].startswith(
        f'sidecar cannot get credentials for the own role "{backup_role}" of container "backup": '
        "RoleNotPermitted: "
    )
    assert 'container "backup"' in posted[1]["message"]
