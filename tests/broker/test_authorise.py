"""The pure authorisation: (caller, pod, namespace, config) -> grant or refusal."""

from __future__ import annotations

import copy
import dataclasses
import json
from typing import Any

import pytest

from sidecred.broker.authorise import Caller, Grant, authorise
from sidecred.broker.sidecar_check import broker_sidecar_problem
from sidecred.kube.watch import CACHE, NOT_FOUND, UNAVAILABLE, Lookup
from sidecred.pods.refusal import Refusal

from .pods import BASE, CONFIG, READER, broker_pod, namespace, plain_pod

UID = "0d9a8c1e-0000-4000-8000-000000000001"
CALLER = Caller("shop", "web", "web-1", UID)
ADMIN = BASE + "admin"


def decide(pod: dict[str, Any] | Lookup, ns: dict[str, Any] | Lookup, **config: Any):
    pod_lookup = pod if isinstance(pod, Lookup) else Lookup(pod, CACHE)
    ns_lookup = ns if isinstance(ns, Lookup) else Lookup(ns, CACHE)
    cfg = dataclasses.replace(CONFIG, **config)
    return authorise(CALLER, pod_lookup, ns_lookup, cfg, broker_sidecar_problem)


def pod(**kwargs: Any) -> dict[str, Any]:
    """web-1 as the webhook admitted it (uid UID unless given)."""
    kwargs.setdefault("uid", UID)
    return broker_pod("web-1", **kwargs)


def annotated_later(key: str, value: str) -> dict[str, Any]:
    """An admitted pod whose annotation changed afterwards (the broker checks again)."""
    changed = pod()
    changed["metadata"]["annotations"][key] = value
    return changed


def sidecar_env_changed(name: str, value: str) -> dict[str, Any]:
    changed = pod()
    for entry in changed["spec"]["initContainers"][0]["env"]:
        if entry["name"] == name:
            entry["value"] = value
    return changed


def with_forged_helper() -> dict[str, Any]:
    forged = pod()
    forged["spec"]["containers"].append(
        {"name": "helper", "image": "x", "command": ["sidecred", "sidecar"]}
    )
    return forged


def never_injected() -> dict[str, Any]:
    bare = plain_pod("web-1", "shop", {"iam.amazonaws.com/role": READER}, "web")
    bare["metadata"]["uid"] = UID
    return bare


# Admitted while its namespace permitted every role; the policy has been narrowed since.
ADMIN_POD = pod(role=ADMIN, admitted_under={"iam.amazonaws.com/permitted": ".*"})


def test_grant_carries_role_session_source_identity_and_pod_identity_tags() -> None:
    grant = decide(pod(annotations={"iam.amazonaws.com/external-id": "ext-42"}), namespace())
    assert grant == Grant(
        role_arn=READER,
        session_name="shop.web-1",
        source_identity="shop.web-1",
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
    notes = {"sidecred.dev/session-duration": "7200", "iam.amazonaws.com/session-name": "batch"}
    grant = decide(pod(role="shop-writer", annotations=notes), namespace())
    assert isinstance(grant, Grant)
    assert grant.role_arn == BASE + "shop-writer"
    assert grant.duration == 7200
    # The pod picks the suffix, never the namespace prefix, and never its source identity.
    assert (grant.session_name, grant.source_identity) == ("shop.batch", "shop.web-1")


ROWS = [
    # (id, pod, namespace, config overrides, status, code, words in the message)
    ("pod-gone", Lookup(None, NOT_FOUND, 'pod "shop/web-1" not found'), namespace(), {}, 403, "PodNotFound", ['"shop/web-1"', "no longer exists"]),
    ("api-down-pod", Lookup(None, UNAVAILABLE, "Kubernetes API unreachable"), namespace(), {}, 503, "KubernetesUnavailable", ["unreachable"]),
    ("replaced", pod(uid="another-uid"), namespace(), {}, 403, "PodReplaced", ['"another-uid"', UID, "replaced"]),
    ("other-account", pod(service_account="admin"), namespace(), {}, 403, "ServiceAccountMismatch", ['"admin"', '"web"']),
    ("not-annotated", pod(role=None), namespace(), {}, 403, "PodNotAnnotated", ["iam.amazonaws.com/role", '"shop/web-1"']),
    ("bad-role", annotated_later("iam.amazonaws.com/role", "bad role"), namespace(), {}, 403, "BadPodAnnotation", ["iam.amazonaws.com/role", "whitespace"]),
    ("short-session", annotated_later("sidecred.dev/session-duration", "900"), namespace(), {}, 403, "BadPodAnnotation", ["sidecred.dev/session-duration=900"]),
    ("never-injected", never_injected(), namespace(), {}, 403, "NoCanonicalSidecar", ["no sidecred container", READER]),
    ("web-identity-sidecar", pod(config=dataclasses.replace(CONFIG, credential_source="web-identity")), namespace(), {}, 403, "NoCanonicalSidecar", ["is not the sidecar sidecred builds"]),
    ("sidecar-for-other-role", sidecar_env_changed("SIDECRED_ROLE_ARN", BASE + "shop-admin"), namespace(), {}, 403, "NoCanonicalSidecar", ["SIDECRED_ROLE_ARN"]),
    ("other-broker-url", sidecar_env_changed("SIDECRED_BROKER_URL", "https://evil.example"), namespace(), {}, 403, "NoCanonicalSidecar", ["SIDECRED_BROKER_URL"]),
    ("forged-helper", with_forged_helper(), namespace(), {}, 403, "NoCanonicalSidecar", ['"helper"']),
    ("broker-not-in-broker-mode", pod(), namespace(), {"credential_source": "web-identity"}, 403, "NoCanonicalSidecar", ["--credential-source web-identity"]),
    ("not-permitted", ADMIN_POD, namespace(), {}, 403, "RoleNotPermitted", [f'role "{ADMIN}" is not permitted in namespace "shop"', "iam.amazonaws.com/permitted="]),
    ("no-policy", pod(), namespace(annotations={}), {}, 403, "RoleNotPermitted", ['namespace "shop" has no role policy', "iam.amazonaws.com/allowed-roles"]),
    ("bad-policy", pod(), namespace(annotations={"iam.amazonaws.com/permitted": "("}), {}, 403, "RoleNotPermitted", ["unusable role policy", "iam.amazonaws.com/permitted"]),
    ("namespace-gone", pod(), Lookup(None, NOT_FOUND, 'namespace "shop" not found'), {}, 403, "NamespaceNotFound", ['"shop"']),
    ("api-down-namespace", pod(), Lookup(None, UNAVAILABLE, "Kubernetes API unreachable"), {}, 503, "KubernetesUnavailable", ["policy of namespace", READER]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("pod_", "ns", "config", "status", "code", "words"),
    [row[1:] for row in ROWS],
    ids=[row[0] for row in ROWS],
)
def test_refusals_say_what_to_fix(
    pod_: Any, ns: Any, config: dict[str, Any], status: int, code: str, words: list[str]
) -> None:
    refusal = decide(copy.deepcopy(pod_), ns, **config)
    assert isinstance(refusal, Refusal), refusal
    assert (refusal.status, refusal.reason) == (status, code), refusal.message
    for word in words:
        assert word in refusal.message
    assert json.loads(refusal.error_body()) == {
        "Code": code,
        "Message": refusal.message,
        "code": code,
        "message": refusal.message,
    }


def test_policy_off_grants_without_reading_the_namespace() -> None:
    down = Lookup(None, UNAVAILABLE, "down")
    grant = decide(ADMIN_POD, down, namespace_policy="off")
    assert isinstance(grant, Grant) and grant.role_arn == ADMIN
