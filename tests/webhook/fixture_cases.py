"""Loading admission fixtures and running them through the pure decision functions.

Each `fixtures/<scenario>.yaml` holds:

    description: what the case shows
    webhook: mutate | validate          (default mutate)
    config: {Settings overrides}   (base_role_arn defaults to BASE_ROLE_ARN)
    request: {operation, subResource, namespace}   (defaults: CREATE, none, the pod's namespace)
             or AdmissionRequest fields for other reviews: kind, resource, name, object,
             oldObject, userInfo (see request_of)
    namespace: Namespace object, or null with namespace_error
    pod: the request's object
    injected: true to validate `pod` as it leaves the mutating webhook, then changed by
              `edit` (JSON Patch ops), as a later webhook or a hand edit would change it
    old_pod: the request's oldObject (UPDATE)
    expect: allowed, code, reason, message (substrings), warnings (substrings; [] = none),
            patch (exact ops, order-insensitive), and properties of the patched pod
            (env, mounts, volumes, sidecar, annotations, image_pull_secrets, ...)
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml

from sidecred.pods.settings import Settings
from sidecred.webhook.decide import Decision, decide_mutation, decide_validation
from sidecred.webhook.mutate import apply_patch
from sidecred.webhook.review import CONTROLLER_USER, admission_request

FIXTURES = Path(__file__).parent / "fixtures"
BASE_ROLE_ARN = "arn:aws:iam::111122223333:role/"
FIXED_TOKEN = "fixed-test-token-0123456789abcdefghijklmnopq"


def fixed_tokens() -> Callable[[], str]:
    """Token mode env's token source for one decision: FIXED_TOKEN for the first role,
    then `FIXED_TOKEN-2`, `-3`, ... (each role's token is its own)."""
    count = itertools.count(1)

    def new_token() -> str:
        n = next(count)
        return FIXED_TOKEN if n == 1 else f"{FIXED_TOKEN}-{n}"

    return new_token


def fixture_paths() -> list[Path]:
    """Pod fixtures; namespace-*.yaml (Namespace reviews) run in test_namespace_review.py."""
    return sorted(p for p in FIXTURES.glob("*.yaml") if not p.name.startswith("namespace-"))


def load_case(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        case = yaml.safe_load(handle)
    unknown = set(case) - {
        "description", "webhook", "config", "request", "namespace", "namespace_error",
        "pod", "old_pod", "expect", "threat", "injected", "edit",
    }  # fmt: skip
    assert not unknown, f"{path.name}: unknown keys {unknown}"
    return case


def config_of(case: dict[str, Any]) -> Settings:
    overrides = {"base_role_arn": BASE_ROLE_ARN, **(case.get("config") or {})}
    known = {f.name for f in fields(Settings)}
    assert set(overrides) <= known, f"unknown config keys {set(overrides) - known}"
    return Settings(**overrides)


def pod_request(
    pod: dict[str, Any],
    *,
    operation: str = "CREATE",
    namespace: str | None = None,
    sub_resource: str | None = None,
    old_pod: dict[str, Any] | None = None,
    kind: str = "Pod",
    resource: str = "pods",
    group: str = "",
) -> dict[str, Any]:
    """An AdmissionRequest shaped as the API server sends it."""
    metadata = pod.get("metadata") if isinstance(pod.get("metadata"), dict) else {}
    return dict(
        admission_request(
            kind={"group": group, "version": "v1", "kind": kind},
            resource={"group": group, "version": "v1", "resource": resource},
            operation=operation,
            obj=pod,
            old_obj=old_pod,
            namespace=namespace or metadata.get("namespace") or "default",
            name=metadata.get("name") or "",
            sub_resource=sub_resource or "",
            user_info=CONTROLLER_USER,
            uid="705ab4f5-6393-11e8-b7cc-42010a800002",
        )
    )


def pod_of(case: dict[str, Any]) -> dict[str, Any]:
    """The fixture's pod; with `injected: true`, as the mutating webhook leaves it, then edited."""
    pod = case["pod"]
    if not case.get("injected"):
        return pod
    decision = decide_mutation(
        pod_request(pod), case.get("namespace"), config_of(case), new_token=fixed_tokens()
    )
    assert decision.allowed and decision.patch, decision.message
    return apply_patch(apply_patch(pod, decision.patch), case.get("edit") or [])


def request_of(case: dict[str, Any]) -> dict[str, Any]:
    """The case's AdmissionRequest. `request:` holds either the short form (kind, resource
    and group as names) or AdmissionRequest fields (kind/resource as group-version
    objects, name, object, oldObject, userInfo), which override the pod-derived ones."""
    fields_ = case.get("request") or {}
    short = {
        k: fields_[k] for k in ("kind", "resource", "group") if isinstance(fields_.get(k), str)
    }
    request = pod_request(
        pod_of(case) if "pod" in case else fields_.get("object") or {},
        operation=fields_.get("operation", "CREATE"),
        namespace=fields_.get("namespace"),
        sub_resource=fields_.get("subResource"),
        old_pod=case.get("old_pod"),
        **short,
    )
    full = {k: v for k, v in fields_.items() if k not in short and k != "group"}
    request.update(full)
    if isinstance(full.get("kind"), dict):
        request["requestKind"] = full["kind"]
    if isinstance(full.get("resource"), dict):
        request["requestResource"] = full["resource"]
    if "subResource" in full:
        request["requestSubResource"] = full["subResource"]
    return request


def run_case(case: dict[str, Any]) -> Decision:
    request, config = request_of(case), config_of(case)
    namespace = case.get("namespace")
    error = case.get("namespace_error", "")
    if case.get("webhook", "mutate") == "validate":
        return decide_validation(request, namespace, config, namespace_error=error)
    return decide_mutation(
        request, namespace, config, new_token=fixed_tokens(), namespace_error=error
    )
