"""The pure authorisation: (caller, pod, namespace, config) -> grant or refusal."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from sidecred.broker.authorise import Caller, Grant, Refusal, authorise
from sidecred.broker.sidecar_check import broker_sidecar_problem
from sidecred.webhook.kube import CACHE, NOT_FOUND, UNAVAILABLE, Lookup

from .pods import BASE, CONFIG, READER, broker_pod, namespace

UID = "0d9a8c1e-0000-4000-8000-000000000001"
CALLER = Caller("shop", "web", "web-1", UID)


def decide(pod: dict[str, Any] | Lookup | None, ns: dict[str, Any] | Lookup | None, **config: Any):
    pod_lookup = pod if isinstance(pod, Lookup) else Lookup(pod, CACHE)
    ns_lookup = ns if isinstance(ns, Lookup) else Lookup(ns, CACHE)
    cfg = dataclasses.replace(CONFIG, **config)
    return authorise(CALLER, pod_lookup, ns_lookup, cfg, broker_sidecar_problem)


def test_grant_carries_role_session_source_identity_and_pod_identity_tags() -> None:
    pod = broker_pod(uid=UID, annotations={"iam.amazonaws.com/external-id": "ext-42"})
    grant = decide(pod, namespace())
    assert grant == Grant(
        role_arn=READER,
        session_name="shop.web-1",
        duration=3600,
        external_id="ext-42",
        tags=(
            ("kubernetes-namespace", "shop"),
            ("kubernetes-pod-name", "web-1"),
            ("kubernetes-pod-uid", UID),
            ("kubernetes-service-account", "web"),
        ),
        pod_uid=UID,
    )


def test_role_name_resolves_and_annotations_set_duration_and_session_name() -> None:
    pod = broker_pod(
        uid=UID,
        role="shop-writer",
        annotations={
            "sidecred.dev/session-duration": "7200",
            "iam.amazonaws.com/session-name": "batch",
        },
    )
    grant = decide(pod, namespace())
    assert isinstance(grant, Grant)
    assert grant.role_arn == BASE + "shop-writer"
    assert grant.duration == 7200
    # The pod picks the suffix, never the namespace prefix.
    assert grant.session_name == "shop.batch"


ROWS = [
    # (id, pod, namespace, config overrides, status, code, words in the message)
    (
        "pod-gone",
        Lookup(None, NOT_FOUND, 'pod "shop/web-1" not found'),
        namespace(),
        {},
        403,
        "PodNotFound",
        ['"shop/web-1"', "no longer exists"],
    ),
    (
        "api-down-pod",
        Lookup(None, UNAVAILABLE, "Kubernetes API unreachable"),
        namespace(),
        {},
        503,
        "KubernetesUnavailable",
        ["unreachable"],
    ),
    (
        "replaced",
        broker_pod(uid="another-uid"),
        namespace(),
        {},
        403,
        "PodReplaced",
        ['"another-uid"', UID, "replaced"],
    ),
    (
        "other-account",
        broker_pod(uid=UID, service_account="admin"),
        namespace(),
        {},
        403,
        "ServiceAccountMismatch",
        ['"admin"', '"web"'],
    ),
    (
        "not-annotated",
        broker_pod(uid=UID, role=None),
        namespace(),
        {},
        403,
        "PodNotAnnotated",
        ["iam.amazonaws.com/role", '"shop/web-1"'],
    ),
    (
        "bad-role",
        broker_pod(uid=UID, role="bad role"),
        namespace(),
        {},
        403,
        "BadPodAnnotation",
        ["iam.amazonaws.com/role", "whitespace"],
    ),
    (
        "short-session",
        broker_pod(uid=UID, annotations={"sidecred.dev/session-duration": "900"}),
        namespace(),
        {},
        403,
        "BadPodAnnotation",
        ["sidecred.dev/session-duration=900"],
    ),
    (
        "no-sidecar",
        dict(
            broker_pod(uid=UID),
            spec={"serviceAccountName": "web", "containers": [{"name": "app", "image": "app"}]},
        ),
        namespace(),
        {},
        403,
        "NoCanonicalSidecar",
        ["no sidecred container", READER],
    ),
    (
        "web-identity-sidecar",
        broker_pod(uid=UID, sidecar_env={"SIDECRED_CREDENTIAL_SOURCE": "web-identity"}),
        namespace(),
        {},
        403,
        "NoCanonicalSidecar",
        ['"web-identity"'],
    ),
    (
        "sidecar-for-other-role",
        broker_pod(uid=UID, sidecar_env={"SIDECRED_ROLE_ARN": BASE + "shop-admin"}),
        namespace(),
        {},
        403,
        "NoCanonicalSidecar",
        ["not the annotated role"],
    ),
    (
        "not-permitted",
        broker_pod(uid=UID, role=BASE + "admin"),
        namespace(),
        {},
        403,
        "RoleNotPermitted",
        [
            'role "arn:aws:iam::123456789012:role/admin" is not permitted in namespace "shop"',
            "iam.amazonaws.com/permitted=",
        ],
    ),
    (
        "no-policy",
        broker_pod(uid=UID),
        namespace(annotations={}),
        {},
        403,
        "RoleNotPermitted",
        ['namespace "shop" has no role policy', "iam.amazonaws.com/allowed-roles"],
    ),
    (
        "bad-policy",
        broker_pod(uid=UID),
        namespace(annotations={"iam.amazonaws.com/permitted": "("}),
        {},
        403,
        "RoleNotPermitted",
        ["unusable role policy", "iam.amazonaws.com/permitted"],
    ),
    (
        "namespace-gone",
        broker_pod(uid=UID),
        Lookup(None, NOT_FOUND, 'namespace "shop" not found'),
        {},
        403,
        "NamespaceNotFound",
        ['"shop"'],
    ),
    (
        "api-down-namespace",
        broker_pod(uid=UID),
        Lookup(None, UNAVAILABLE, "Kubernetes API unreachable"),
        {},
        503,
        "KubernetesUnavailable",
        ["policy of namespace", READER],
    ),
]


@pytest.mark.parametrize(
    ("pod", "ns", "config", "status", "code", "words"),
    [row[1:] for row in ROWS],
    ids=[row[0] for row in ROWS],
)
def test_refusals_say_what_to_fix(
    pod: Any, ns: Any, config: dict[str, Any], status: int, code: str, words: list[str]
) -> None:
    refusal = decide(pod, ns, **config)
    assert isinstance(refusal, Refusal), refusal
    assert (refusal.status, refusal.code) == (status, code)
    for word in words:
        assert word in refusal.message
    assert refusal.body() == {
        "Code": code,
        "Message": refusal.message,
        "code": code,
        "message": refusal.message,
    }


def test_policy_off_grants_without_reading_the_namespace() -> None:
    grant = decide(
        broker_pod(uid=UID, role=BASE + "admin"),
        Lookup(None, UNAVAILABLE, "down"),
        namespace_policy="off",
    )
    assert isinstance(grant, Grant) and grant.role_arn == BASE + "admin"


def test_a_second_forged_sidecar_for_another_role_is_refused() -> None:
    pod = broker_pod(uid=UID)
    pod["spec"]["containers"].append(
        {
            "name": "helper",
            "image": "x",
            "command": ["sidecred", "sidecar"],
            "env": [{"name": "SIDECRED_ROLE_ARN", "value": BASE + "shop-admin"}],
        }
    )
    refusal = decide(pod, namespace())
    assert isinstance(refusal, Refusal) and refusal.code == "NoCanonicalSidecar"
    assert '"helper"' in refusal.message
