"""The pure core of pod events: what event, if any, now; readiness answers; the Event object."""

from __future__ import annotations

import copy
from typing import Any

import kubernetes_validate
import pytest

from sidecred.kube.events import (
    AVAILABLE,
    MAX_MESSAGE_CHARS,
    RATE_LIMIT_SECONDS,
    UNAVAILABLE,
    PodEvent,
    build_event,
    event_due,
    event_from_object,
    needs_reading,
)
from sidecred.kube.sidecar_health import HealthUnavailable, SidecarHealth, parse_readyz

ROLE = "arn:aws:iam::111122223333:role/shop-reader"
T0 = 1_800_000_000.0
REFUSED = SidecarHealth(
    False, code="AccessDenied", message="Not authorized to perform sts:AssumeRoleWithWebIdentity"
)
READY = SidecarHealth(True, role_arn=ROLE, expires="2027-01-15T09:00:00Z")


def pod(ready: bool = False, **status: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "web-1",
            "namespace": "shop",
            "uid": "0f0e0d0c-0000-4000-8000-000000000001",
            "annotations": {"sidecred.dev/injected": ROLE},
        },
        "spec": {
            "initContainers": [
                {"name": "sidecred", "image": "sidecred", "restartPolicy": "Always"}
            ],
            "containers": [{"name": "app", "image": "app"}],
        },
        "status": {
            "phase": "Running" if ready else "Pending",
            "podIP": "10.0.0.7",
            "initContainerStatuses": [
                {"name": "sidecred", "ready": ready, "state": {"running": {}}}
            ],
            **status,
        },
    }


def unavailable(at: float) -> PodEvent:
    return PodEvent(UNAVAILABLE, "earlier", at)


def test_refusal_names_role_and_sts_cause() -> None:
    event = event_due(pod(), REFUSED, {}, T0)
    assert event is not None and event.reason == UNAVAILABLE and event.type == "Warning"
    assert event.message == (
        f'sidecar cannot get credentials for role "{ROLE}": AccessDenied: '
        "Not authorized to perform sts:AssumeRoleWithWebIdentity"
    )
    assert event.at == T0


@pytest.mark.parametrize(
    ("since", "due"),
    [(0, False), (60, False), (RATE_LIMIT_SECONDS - 1, False), (RATE_LIMIT_SECONDS, True)],
)
def test_at_most_one_unavailable_per_rate_limit_window(since: float, due: bool) -> None:
    last = {UNAVAILABLE: unavailable(T0)}
    assert (event_due(pod(), REFUSED, last, T0 + since) is not None) is due


def test_recovery_in_between_does_not_reset_the_window() -> None:
    last = {UNAVAILABLE: unavailable(T0), AVAILABLE: PodEvent(AVAILABLE, "ok", T0 + 30)}
    assert event_due(pod(), REFUSED, last, T0 + 60) is None
    assert event_due(pod(), REFUSED, last, T0 + RATE_LIMIT_SECONDS) is not None


def test_first_fetch_in_progress_is_not_a_failure() -> None:
    starting = SidecarHealth(False, code="CredentialsNotReady", message="being fetched")
    assert event_due(pod(), starting, {}, T0) is None


def test_recovery_is_reported_once() -> None:
    last = {UNAVAILABLE: unavailable(T0)}
    event = event_due(pod(ready=True), READY, last, T0 + 20)
    assert event is not None and event.reason == AVAILABLE and event.type == "Normal"
    assert ROLE in event.message and "2027-01-15T09:00:00Z" in event.message
    last = {**last, AVAILABLE: event}
    assert event_due(pod(ready=True), READY, last, T0 + 40) is None


def test_ready_pod_without_history_gets_nothing() -> None:
    assert event_due(pod(ready=True), READY, {}, T0) is None


def test_long_messages_are_cut_to_the_api_limit() -> None:
    health = SidecarHealth(False, code="AccessDenied", message="x" * 5000)
    event = event_due(pod(), health, {}, T0)
    assert event is not None and len(event.message) == MAX_MESSAGE_CHARS


def _changed(**status: Any) -> dict[str, Any]:
    changed = pod()
    changed["status"].update(status)
    return changed


def _terminating() -> dict[str, Any]:
    terminating = copy.deepcopy(pod())
    terminating["metadata"]["deletionTimestamp"] = "2026-11-30T16:00:00Z"
    return terminating


# (case, pod, its last events, whether its sidecar is read): also run on projections
# (tests/scale/test_projected_decisions.py).
READ_CASES = [
    ("not ready", pod(), {}, True),
    ("ready, never failed", pod(ready=True), {}, False),
    ("ready after a failure", pod(ready=True), {UNAVAILABLE: unavailable(T0)}, True),
    (
        "ready, recovery reported",
        pod(ready=True),
        {UNAVAILABLE: unavailable(T0), AVAILABLE: PodEvent(AVAILABLE, "ok", T0 + 10)},
        False,
    ),
    ("finished", _changed(phase="Succeeded"), {}, False),
    ("no IP yet", _changed(podIP=""), {}, False),
    (
        "sidecar waiting",
        _changed(
            initContainerStatuses=[{"name": "sidecred", "ready": False, "state": {"waiting": {}}}]
        ),
        {},
        False,
    ),
    ("no sidecar status", _changed(initContainerStatuses=[]), {}, False),
    ("terminating", _terminating(), {}, False),
]


@pytest.mark.parametrize(("case", "obj", "last", "expected"), READ_CASES)
def test_which_pods_are_read(case: str, obj: dict, last: dict, expected: bool) -> None:
    assert needs_reading(obj, last) is expected, case


def test_event_object_is_a_valid_core_v1_event_on_the_sidecar() -> None:
    event = PodEvent(UNAVAILABLE, "sidecar cannot get credentials", T0)
    obj = build_event(pod(), event, "sidecred-webhook-0_1a2b3c4d")
    assert kubernetes_validate.validate(obj, kubernetes_validate.latest_version(), strict=True)
    involved = obj["involvedObject"]
    assert involved["uid"] == pod()["metadata"]["uid"] and involved["kind"] == "Pod"
    assert involved["fieldPath"] == "spec.initContainers{sidecred}"
    assert obj["type"] == "Warning" and obj["reason"] == UNAVAILABLE
    assert obj["metadata"]["labels"] == {"sidecred.dev/event": "true"}
    assert obj["metadata"]["name"].startswith("web-1.")
    # Read back by a later leader, it is the same event (to the second).
    assert event_from_object(obj) == (pod()["metadata"]["uid"], event)


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (200, f"ready: credentials for {ROLE} valid until 2027-01-15T09:00:00Z\n", READY),
        (
            503,
            "not ready: AccessDenied: Not authorized to perform sts:AssumeRoleWithWebIdentity\n",
            REFUSED,
        ),
        (
            503,
            "not ready: CredentialsNotReady: credentials for x are being fetched\n",
            SidecarHealth(
                False, code="CredentialsNotReady", message="credentials for x are being fetched"
            ),
        ),
    ],
)
def test_parse_readyz(status: int, body: str, expected: SidecarHealth) -> None:
    assert parse_readyz(status, body) == expected


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (503, '{"kind":"Status","message":"error trying to reach service"}'),
        (404, "404 page not found"),
        (200, "ok"),
    ],
)
def test_answers_that_are_not_the_sidecars_are_refused(status: int, body: str) -> None:
    with pytest.raises(HealthUnavailable, match=f"HTTP {status}"):
        parse_readyz(status, body)


def test_a_not_ready_answer_naming_one_role_names_it_in_the_event() -> None:
    """A sidecar with several roles names the one not ready (sidecar/endpoint.py's words)."""
    backup = "arn:aws:iam::111122223333:role/shop-backup"
    body = f"not ready: AccessDenied: container backup role {backup}: AccessDenied: no\n"
    health = parse_readyz(503, body)
    assert (health.container, health.role_arn, health.code, health.message) == (
        "backup", backup, "AccessDenied", "no",
    )  # fmt: skip
    event = event_due(pod(), health, {}, T0)
    assert event is not None
    assert event.message == (
        f'sidecar cannot get credentials for the own role "{backup}" of container "backup": '
        "AccessDenied: no"
    )
    only_pod = parse_readyz(503, f"not ready: AccessDenied: pod role {ROLE}: AccessDenied: no")
    assert (only_pod.container, only_pod.role_arn, only_pod.message) == ("", ROLE, "no")
    # Two roles not ready: the answer is kept whole, naming both.
    both = (
        f"not ready: AccessDenied: pod role {ROLE}: AccessDenied: no; "
        f"container backup role {backup}: AccessDenied: no"
    )
    health = parse_readyz(503, both)
    assert (
        health.container == ""
        and health.message.startswith("pod role")
        and "backup" in health.message
    )
