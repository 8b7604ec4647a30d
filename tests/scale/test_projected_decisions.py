"""What the watch caches keep is enough: every admission, broker and event fixture decides
the same from a projection (what the caches hold) as from the whole object.

Each object goes through JSON first, as it comes from the API server, then through
the projection the caches apply; the decisions are then made by the same code
that decides from whole objects, with the broker's canonical-sidecar verdict
taken from the projection as the broker takes it.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from sidecred.broker.authorise import Grant, Refusal, authorise
from sidecred.broker.pod_events import own_pod
from sidecred.broker.sidecar_check import broker_sidecar_problem, projected_sidecar_problem
from sidecred.dev.cluster import PodFactory, broker_settings, namespace_object
from sidecred.kube.events import build_event, event_due, needs_reading
from sidecred.kube.projection import (
    PodProjection,
    PodProjector,
    project_namespace,
)
from sidecred.kube.sidecar_health import health_port, injected_role, sidecar_status
from sidecred.kube.watch import CACHE, Lookup
from sidecred.pods.settings import Settings
from tests.broker import test_authorise as broker_cases
from tests.broker import test_container_roles as roles_cases
from tests.broker.pods import CONFIG
from tests.events import test_event_due as event_cases
from tests.webhook.fixture_cases import fixture_paths, load_case, run_case

FORMS = ("full", "projected")
PATHS = fixture_paths()


def as_from_api(obj: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(obj))


def namespace_as(form: str, namespace: dict[str, Any] | None) -> Any:
    if namespace is None or form == "full":
        return namespace
    return project_namespace(as_from_api(namespace))


def pod_as(form: str, pod: dict[str, Any], config: Settings) -> Any:
    """The pod whole, or as the broker's pod cache projects it (verdict included)."""
    if form == "full":
        return pod
    check = lambda whole: broker_sidecar_problem(whole, config)  # noqa: E731
    projected = PodProjector(frozenset({config.annotation_key}), check)(as_from_api(pod))
    assert isinstance(projected, PodProjection) and projected.checked
    return projected


# --- admission: the namespace the webhook's cache holds ---------------------------------
def named_rows(argnames: tuple[str, ...], rows: list[tuple[Any, ...]]) -> pytest.MarkDecorator:
    """Parametrise over rows of (test id, *values)."""
    return pytest.mark.parametrize(
        argnames, [row[1:] for row in rows], ids=[row[0] for row in rows]
    )


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_admission_decides_the_same(path: Path, form: str) -> None:
    case = load_case(path)
    whole = run_case(case)
    decision = run_case(dict(case, namespace=namespace_as(form, case.get("namespace"))))
    assert decision == whole
    assert (decision.allowed, decision.reason) == (
        case["expect"]["allowed"],
        case["expect"]["reason"],
    )


# --- the broker: the pod and namespace its caches hold ---------------------------------
def _broker_rows() -> list[tuple[str, Any, Any, dict[str, Any]]]:
    rows = [(row[0], row[1], row[2], row[3]) for row in broker_cases.ROWS]
    granted = broker_cases.pod(annotations={"iam.amazonaws.com/external-id": "ext-42"})
    rows.append(("granted", granted, broker_cases.namespace(), {}))
    notes = {"sidecred.dev/session-duration": "7200", "iam.amazonaws.com/session-name": "batch"}
    rows.append(("granted-options", broker_cases.pod(role="shop-writer", annotations=notes), broker_cases.namespace(), {}))  # fmt: skip
    rows.append(("policy-off", broker_cases.ADMIN_POD, broker_cases.namespace(), {"namespace_policy": "off"}))  # fmt: skip
    return rows


BROKER_ROWS = _broker_rows()


def _outcome(result: Grant | Refusal) -> Any:
    return result if isinstance(result, Grant) else (result.status, result.reason, result.message)


def _authorise(pod: Any, namespace: Any, config: Settings, form: str) -> Grant | Refusal:
    check = broker_sidecar_problem if form == "full" else projected_sidecar_problem
    pod_lookup = pod if isinstance(pod, Lookup) else Lookup(pod_as(form, pod, config), CACHE)
    if not isinstance(namespace, Lookup):
        namespace = Lookup(namespace_as(form, namespace), CACHE)
    return authorise(broker_cases.CALLER, pod_lookup, namespace, config, check)


@pytest.mark.parametrize("form", FORMS)
@named_rows(("pod", "namespace", "overrides"), BROKER_ROWS)
def test_broker_decides_the_same(
    pod: Any, namespace: Any, overrides: dict[str, Any], form: str
) -> None:
    config = dataclasses.replace(CONFIG, **overrides)
    whole = _authorise(copy.deepcopy(pod), namespace, config, "full")
    result = _authorise(copy.deepcopy(pod), namespace, config, form)
    assert _outcome(result) == _outcome(whole)
    if not isinstance(pod, Lookup):  # the refusal event (or its absence) is the same too
        caller = broker_cases.CALLER
        mine = own_pod(caller, pod_as(form, pod, config))
        assert (mine is None) == (own_pod(caller, pod) is None)


# --- events: what the reporter and the broker read of a pod ------------------------------
def _realistic_pods() -> list[tuple[str, dict[str, Any], dict]]:
    factory = PodFactory(broker_settings(CONFIG.broker_ca))
    running = factory.pod("team1-ns00001", 7, injected=True)
    starting = copy.deepcopy(running)
    starting["status"]["initContainerStatuses"][0]["ready"] = False
    return [("realistic running", running, {}), ("realistic starting", starting, {})]


EVENT_ROWS = [(row[0], row[1], row[2]) for row in event_cases.READ_CASES] + _realistic_pods()


def _event_outcome(pod: Any, last: dict) -> tuple[Any, ...]:
    due = [event_due(pod, health, last, event_cases.T0 + 400) for health in (event_cases.REFUSED, event_cases.READY)]  # fmt: skip
    event = due[0] or event_cases.unavailable(event_cases.T0)
    body = build_event(pod, event, "sidecred-webhook-0_1a2b3c4d")
    body["metadata"]["name"] = body["metadata"]["name"].rsplit(".", 1)[0]  # a random suffix
    status = dict(sidecar_status(pod))
    return (needs_reading(pod, last), due, body, health_port(pod), injected_role(pod), status.get("ready"))  # fmt: skip


@pytest.mark.parametrize("form", FORMS)
@named_rows(("pod", "last"), EVENT_ROWS)
def test_events_decide_the_same(pod: dict[str, Any], last: dict, form: str) -> None:
    projected = pod if form == "full" else PodProjector()(as_from_api(pod))
    assert _event_outcome(projected, last) == _event_outcome(pod, last)


def test_the_realistic_pod_runs_the_canonical_sidecar_and_its_namespace_permits_it() -> None:
    """The generated cluster is one the broker serves (else the rows above would prove less)."""
    config = broker_settings(CONFIG.broker_ca)
    pod = PodFactory(config).pod("team1-ns00001", 3, injected=True)
    assert broker_sidecar_problem(pod, config) is None
    assert pod_as("projected", pod, config).sidecar_problem is None
    annotations = project_namespace(namespace_object("team1-ns00001"))["metadata"]["annotations"]
    assert annotations == {"iam.amazonaws.com/permitted": pod["metadata"]["annotations"]["iam.amazonaws.com/role"]}  # fmt: skip


# --- the broker and sidecred.dev/container-roles: the pod's container names are kept -----
def _roles_rows() -> list[tuple[str, dict[str, Any], str, dict[str, Any]]]:
    narrowed = roles_cases.namespace(annotations={"iam.amazonaws.com/permitted": roles_cases.READER})  # fmt: skip
    changed = roles_cases.roles_pod()
    changed["metadata"]["annotations"][roles_cases.KEY] = '{"backup": "shop-admin", "metrics": ""}'
    only = roles_cases.roles_pod(role=None, value='{"backup": "shop-backup"}')
    pod, ns = roles_cases.roles_pod(), roles_cases.namespace()
    return [
        ("own-role", pod, "backup", ns),
        ("pod-role", pod, "", ns),
        ("no-credentials", pod, "metrics", ns),
        ("uses-pod-role", pod, "app", ns),
        ("no-such-container", pod, "cron", ns),
        ("the-sidecar", pod, "sidecred", ns),
        ("map-only-no-container", only, "", ns),
        ("map-only", only, "backup", ns),
        ("revoked", pod, "backup", narrowed),
        ("map-changed", changed, "backup", ns),
    ]


ROLES_ROWS = _roles_rows()


@pytest.mark.parametrize("form", FORMS)
@named_rows(("pod", "container", "namespace"), ROLES_ROWS)
def test_broker_container_roles_decide_the_same(
    pod: dict[str, Any], container: str, namespace: dict[str, Any], form: str
) -> None:
    def decide(form_: str) -> Grant | Refusal:
        check = broker_sidecar_problem if form_ == "full" else projected_sidecar_problem
        pod_lookup = Lookup(pod_as(form_, copy.deepcopy(pod), CONFIG), CACHE)
        ns_lookup = Lookup(namespace_as(form_, namespace), CACHE)
        return authorise(roles_cases.CALLER, pod_lookup, ns_lookup, CONFIG, check, container)

    assert _outcome(decide(form)) == _outcome(decide("full"))
