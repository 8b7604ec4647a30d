"""The admission decision: request dict, namespace and config in, Decision out. Pure.

The HTTP edge looks the namespace up (namespace_to_lookup says which, if any)
and passes it in; randomness (the per-pod token of token mode env) is
injected, so the same inputs always give the same decision and patch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sidecred.pods.annotations import (
    CONTAINER_ROLES_KEY,
    PodOptions,
    q,
)
from sidecred.pods.canonical import (
    SidecarVerdict,
    all_containers,
    check_sidecar,
    pod_roles,
    wants_sidecar,
)
from sidecred.pods.container_roles import ContainerRoles
from sidecred.pods.dns_names import is_dns1123_label
from sidecred.pods.names import SIDECAR_NAME
from sidecred.pods.pod import (
    check_pod_shape,
    find_sidecar,
    is_pod_request,
    pod_label,
    pod_namespace,
)
from sidecred.pods.policy import evaluate_policy, for_container, withheld_denial
from sidecred.pods.refusal import Refusal
from sidecred.pods.settings import Settings
from sidecred.pods.sidecar_spec import plan_injection
from sidecred.sidecar.token_file import generate_token
from sidecred.webhook.access import (
    check_connect,
    check_token_request,
    is_connect,
    is_token_request,
)
from sidecred.webhook.isolation import check_isolation
from sidecred.webhook.mutate import build_patch
from sidecred.webhook.validate import (
    check_app_containers,
    check_ephemeral,
    check_injected_label,
    check_update,
)

# Not a policy verdict: the same request can succeed once the namespace can be
# read, so it is answered "service unavailable" (still a denial: fail closed).
NAMESPACE_UNAVAILABLE_CODE = 503


@dataclass(frozen=True)
class Decision:
    """The answer to one admission request.

    reason is a short stable label for metrics: injected, env-added, unchanged,
    skipped, no-role, allowed (validation passed) or a denial: bad-request,
    bad-annotation, host-network, forged-sidecar, namespace-unavailable,
    no-policy, not-permitted, bad-policy, shared-kernel-view, node-access,
    foreign-endpoint, mount-conflict, not-injected, role-changed, image-changed,
    injected-label-removed, debug-target, sidecred-audience, token-request, sidecar-exec.
    """

    allowed: bool
    code: int = 200
    message: str = ""
    patch: list[dict[str, Any]] | None = None  # JSON Patch ops
    warnings: tuple[str, ...] = ()
    reason: str = "allowed"


def deny(refusal: Refusal, warnings: list[str] | tuple[str, ...] = ()) -> Decision:
    return Decision(
        allowed=False,
        code=refusal.status,
        message=refusal.message,
        warnings=tuple(warnings),
        reason=refusal.reason,
    )


def namespace_to_lookup(request: Mapping[str, Any], config: Settings) -> str | None:
    """The namespace whose policy this request needs, or None if it needs none.

    Only a pod CREATE that carries the role annotation is checked against policy.
    A name that is not a DNS-1123 label, or an object namespace that is not the
    request's, is never looked up: the decision refuses those (400) without it.
    """
    if config.namespace_policy == "off" or not is_pod_request(request):
        return None
    if request.get("operation") != "CREATE" or request.get("subResource"):
        return None
    obj = request.get("object")
    if not isinstance(obj, dict):
        return None
    metadata = obj.get("metadata")
    annotations = metadata.get("annotations") if isinstance(metadata, dict) else None
    if not isinstance(annotations, dict) or not (
        config.annotation_key in annotations or CONTAINER_ROLES_KEY in annotations
    ):
        return None
    stated = metadata.get("namespace") if isinstance(metadata, dict) else None
    requested = request.get("namespace")
    if stated and requested and stated != requested:
        return None
    name = pod_namespace(request)
    return name if is_dns1123_label(name) else None


def _check_roles_policy(
    read: _RolePod,
    request: Mapping[str, Any],
    namespace: Mapping[str, Any] | None,
    config: Settings,
    namespace_error: str,
) -> None:
    """The pod's role and every container's own, each against the namespace's policy."""
    if config.namespace_policy == "off":
        return
    name = pod_namespace(request)
    pod_role = [("", read.role_arn)] if read.role_arn is not None else []
    for container, role_arn in pod_role + list(read.roles.own):
        refusal = None
        if namespace is None:
            cause = namespace_error or "it could not be looked up"
            refusal = Refusal(
                "namespace-unavailable",
                f"sidecred: cannot check role {q(role_arn)}: the policy of namespace {q(name)} "
                f"is unavailable ({cause}); pods with a role are refused until it can be read",
                NAMESPACE_UNAVAILABLE_CODE,
            )
        else:
            annotations = (namespace.get("metadata") or {}).get("annotations") or {}
            result = evaluate_policy(role_arn, name, annotations, config.base_role_arn)
            if not result.permitted:
                explained = config.explain_denials
                message = result.message if explained else withheld_denial(role_arn, name)
                refusal = Refusal(result.reason, message)
        if refusal is not None:
            if container:
                message = for_container(refusal.message, container)
                refusal = Refusal(refusal.reason, message, refusal.status)
            raise refusal


def _check_host_network(pod: Mapping[str, Any], request: Mapping[str, Any]) -> None:
    if (pod.get("spec") or {}).get("hostNetwork"):
        raise Refusal(
            "host-network",
            f"sidecred: {pod_label(request)} uses hostNetwork, so its loopback is the node's and "
            "other pods could read its credentials; remove hostNetwork or the role annotation",
        )


_KINDS = {
    "initContainers": "init container",
    "containers": "container",
    "ephemeralContainers": "ephemeral container",
}


def _check_sidecar_isolation(pod: Mapping[str, Any], request: Mapping[str, Any]) -> None:
    """A pod that gets or has the sidecar keeps the sidecar's token to the sidecar."""
    containers = [(_KINDS[kind], c) for kind, _, c in all_containers(pod)]
    check_isolation(pod, pod_label(request), containers)


def _check_namespace(request: Mapping[str, Any]) -> None:
    """The object's namespace, when set, is the request's (the one RBAC authorised)."""
    obj = request.get("object") or {}
    stated = (obj.get("metadata") or {}).get("namespace")
    requested = request.get("namespace")
    if stated and requested and stated != requested:
        raise Refusal(
            "bad-request",
            f"sidecred: the pod's metadata.namespace {q(stated)} is not the request's "
            f"namespace {q(requested)}",
            400,
        )


@dataclass(frozen=True)
class _RolePod:
    """A CREATEd pod that asks for a role, read and checked as both webhooks need it."""

    pod: Mapping[str, Any]
    role_arn: str | None  # None when only containers have roles
    options: PodOptions
    roles: ContainerRoles
    verdict: SidecarVerdict


def _read_role_pod(request: Mapping[str, Any], config: Settings) -> _RolePod | None:
    """The checks /mutate and /validate share on CREATE; None when the pod asks for no role.

    Every pod, annotated or not, is checked for a forged sidecar and for tokens
    with a sidecred audience, and every pod that gets or has the sidecar for
    settings that would show its token to other containers (isolation.py).
    Raises Refusal for those, a malformed pod, a namespace mismatch, hostNetwork
    with a role, and a bad role or option annotation.
    """
    pod = check_pod_shape(request.get("object"))
    _check_namespace(request)
    wanted = wants_sidecar(pod, config)
    if wanted:
        _check_host_network(pod, request)
    if wanted or find_sidecar(pod) is not None:
        _check_sidecar_isolation(pod, request)
    verdict = check_sidecar(pod, config, pod_namespace(request))
    if verdict.problem is not None:
        raise verdict.problem
    if not wanted:
        return None
    role_arn, options, roles = pod_roles(pod, config)
    return _RolePod(pod, role_arn, options, roles, verdict)


def _is_pod_create(request: Mapping[str, Any]) -> bool:
    return (
        is_pod_request(request)
        and request.get("operation") == "CREATE"
        and not request.get("subResource")
    )


def decide_mutation(
    request: Mapping[str, Any],
    namespace: Mapping[str, Any] | None,
    config: Settings,
    *,
    new_token: Callable[[], str] = generate_token,
    namespace_error: str = "",
) -> Decision:
    """Decide a /mutate request: inject the sidecar, or refuse the pod."""
    if not _is_pod_create(request):
        return Decision(allowed=True, reason="skipped")
    warnings: list[str] = []
    try:
        read = _read_role_pod(request, config)
        if read is None:
            return Decision(allowed=True, reason="no-role")
        _check_roles_policy(read, request, namespace, config, namespace_error)
        injection = plan_injection(
            read.pod,
            read.role_arn,
            read.options,
            config,
            new_token,
            pod_namespace(request),
            read.roles,
        )
        ops, patch_warnings = build_patch(
            read.pod, injection, add_sidecar=not read.verdict.canonical
        )
    except Refusal as refusal:
        return deny(refusal, warnings)
    warnings += patch_warnings
    added = not read.verdict.canonical
    reason = "injected" if added else "env-added" if ops else "unchanged"
    return Decision(allowed=True, patch=ops or None, warnings=tuple(warnings), reason=reason)


def _decide_pod_update(request: Mapping[str, Any], config: Settings) -> Decision:
    old = check_pod_shape(request.get("oldObject"), "request.oldObject")
    new = check_pod_shape(request.get("object"))
    if request.get("subResource") == "ephemeralcontainers":
        check_ephemeral(old, new, config)
    else:
        check_update(old, new, config)
        check_injected_label(old, new, config)
    return Decision(allowed=True)


def _decide_pod_create(
    request: Mapping[str, Any],
    namespace: Mapping[str, Any] | None,
    config: Settings,
    namespace_error: str,
    warnings: list[str],
) -> Decision:
    read = _read_role_pod(request, config)
    if read is None:
        return Decision(allowed=True, reason="no-role", warnings=tuple(warnings))
    if not read.verdict.canonical:
        asked = f"role {q(read.role_arn)}" if read.role_arn else f"roles in {CONTAINER_ROLES_KEY}"
        raise Refusal(
            "not-injected",
            f"sidecred: {pod_label(request)} has {asked} but no {q(SIDECAR_NAME)} "
            "sidecar: the sidecred mutating webhook did not run; check its registration",
        )
    _check_roles_policy(read, request, namespace, config, namespace_error)
    if read.verdict.injection is not None:  # planned by check_sidecar for this pod
        check_app_containers(read.pod, read.verdict.injection)
    return Decision(allowed=True, warnings=tuple(warnings))


def decide_validation(
    request: Mapping[str, Any],
    namespace: Mapping[str, Any] | None,
    config: Settings,
    *,
    namespace_error: str = "",
) -> Decision:
    """Decide a /validate request, after all mutations; never patches.

    Pods (CREATE, UPDATE, ephemeral containers), exec/attach into a pod, and
    TokenRequests for a sidecred audience (SECURITY.md, Paths 1-3); anything else is skipped.
    """
    operation, subresource = request.get("operation"), request.get("subResource") or ""
    warnings: list[str] = []
    try:
        if is_token_request(request):
            check_token_request(request, config)
            return Decision(allowed=True)
        if is_connect(request):
            check_connect(request)
            return Decision(allowed=True)
        if not is_pod_request(request):
            return Decision(allowed=True, reason="skipped")
        if operation == "UPDATE" and subresource in ("", "ephemeralcontainers"):
            return _decide_pod_update(request, config)
        if operation != "CREATE" or subresource:
            return Decision(allowed=True, reason="skipped")
        return _decide_pod_create(request, namespace, config, namespace_error, warnings)
    except Refusal as refusal:
        return deny(refusal, warnings)
