"""The broker's authorisation: who is calling, may their pod have its role now? Pure.

`authorise(caller, pod lookup, namespace lookup, config, sidecar_problem, container)`
gives a `Grant` (what to ask STS for) or a `Refusal` (a stable reason, which
is the error code the sidecar sees, a message a person can act on, an HTTP status). The role comes only from the pod the
caller's token is bound to, never from the request: the request may only name
one of the pod's containers, whose role is the one the pod's admitted
`sidecred.dev/container-roles` gives it. Policy denials reuse the
webhook's wording, so a refused issuance reads like a refused admission.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sidecred.kube.watch import NOT_FOUND, Lookup
from sidecred.pods.annotations import (
    CONTAINER_ROLES_KEY,
    PodOptions,
    annotations_of,
    q,
    read_pod_options,
)
from sidecred.pods.container_roles import read_container_roles
from sidecred.pods.pod import iter_containers
from sidecred.pods.policy import evaluate_policy, for_container
from sidecred.pods.refusal import Refusal
from sidecred.pods.roles import RoleError, resolve_role
from sidecred.pods.session import custom_session_name
from sidecred.pods.settings import Settings
from sidecred.sidecar.session_name import (
    build_session_name,
    container_session_name,
    session_tags,
)

# (pod, config) -> why the pod does not run the canonical broker-mode sidecar, or None.
SidecarProblem = Callable[[Mapping[str, Any], Settings], str | None]


@dataclass(frozen=True)
class Caller:
    """The pod a reviewed token is bound to (TokenReview `status.user`)."""

    namespace: str
    service_account: str
    pod_name: str
    pod_uid: str

    @property
    def label(self) -> str:
        return f'pod "{self.namespace}/{self.pod_name}"'


@dataclass(frozen=True)
class Grant:
    """What the broker asks STS for on a pod's behalf."""

    role_arn: str
    session_name: str
    source_identity: str  # always `<namespace>.<pod>`, never from an annotation
    duration: int
    external_id: str | None
    tags: tuple[tuple[str, str], ...]
    pod_uid: str
    container: str = ""  # the container whose own role this is; "" for the pod's role


def unavailable(message: str) -> Refusal:
    """The API server could not answer and nothing usable is cached: try again later."""
    return Refusal("KubernetesUnavailable", message, 503)


def _found(lookup: Lookup, missing: Refusal, unreadable: str) -> Mapping[str, Any]:
    """The looked-up object; `missing` (403) when it does not exist, a 503 when it can't be read."""
    if lookup.object is not None:
        return lookup.object
    if lookup.source == NOT_FOUND:
        raise missing
    raise unavailable(unreadable)


def _check_pod(caller: Caller, lookup: Lookup) -> Mapping[str, Any]:
    gone = f"sidecred broker: {caller.label}, which the token is bound to, no longer exists"
    unreadable = f"sidecred broker: cannot read {caller.label}: {lookup.error}"
    pod = _found(lookup, Refusal("PodNotFound", gone, 403), unreadable)
    metadata = pod.get("metadata") or {}
    uid = str(metadata.get("uid") or "")
    if uid != caller.pod_uid:
        raise Refusal(
            "PodReplaced",
            f"sidecred broker: {caller.label} has uid {q(uid)}, but the token is bound to uid "
            f"{q(caller.pod_uid)}: the pod was replaced; the new pod's sidecar has its own token",
            403,
        )
    account = str((pod.get("spec") or {}).get("serviceAccountName") or "default")
    if account != caller.service_account:
        raise Refusal(
            "ServiceAccountMismatch",
            f"sidecred broker: {caller.label} runs as service account {q(account)}, but the "
            f"token is for {q(caller.service_account)}",
            403,
        )
    return pod


def _resolve(caller: Caller, pod: Mapping[str, Any], config: Settings) -> str:
    annotations = annotations_of(pod)
    value = annotations.get(config.annotation_key)
    if value is None:
        also = (
            f"; its containers' own roles ({CONTAINER_ROLES_KEY}) are asked for with "
            "?container=<name>"
            if CONTAINER_ROLES_KEY in annotations
            else ", so it has no role to issue"
        )
        raise Refusal(
            "PodNotAnnotated",
            f"sidecred broker: {caller.label} has no {config.annotation_key} annotation{also}",
            403,
        )
    try:
        return resolve_role(str(value), config.base_role_arn, config.annotation_key)
    except RoleError as exc:
        raise Refusal("BadPodAnnotation", f"sidecred broker: {caller.label}: {exc}", 403) from None


def _resolve_container(
    caller: Caller, pod: Mapping[str, Any], config: Settings, container: str
) -> tuple[str, PodOptions]:
    """The role the pod's admitted annotations give `container` as its own, or a 403; and
    the pod's options, read on the way."""
    annotations = annotations_of(pod)
    pod_role = _resolve(caller, pod, config) if config.annotation_key in annotations else None
    options = _pod_options(caller, pod, config)
    try:
        roles = read_container_roles(pod, pod_role, config.base_role_arn, options.skip_containers)
    except Refusal as exc:
        raise _bad_annotation(caller, exc) from None
    role_arn = roles.role_of(container)
    if role_arn is not None:
        return role_arn, options
    if container in roles.none:
        why = f'{CONTAINER_ROLES_KEY} gives it no credentials ("")'
    elif container in {str(c.get("name")) for _, _, c in iter_containers(pod)}:
        why = f"it has no role of its own in {CONTAINER_ROLES_KEY} (it uses the pod's role)"
    else:
        why = "the pod has no container of that name"
    raise Refusal(
        "NoContainerRole",
        f"sidecred broker: container {q(container)} of {caller.label} has no role to issue: {why}",
        403,
    )


def _check_policy(
    caller: Caller, role_arn: str, namespace: Lookup, config: Settings, container: str = ""
) -> None:
    if config.namespace_policy == "off":
        return
    gone = f"sidecred broker: namespace {q(caller.namespace)} does not exist"
    unreadable = (
        f"sidecred: cannot check role {q(role_arn)}: the policy of namespace "
        f"{q(caller.namespace)} is unavailable ({namespace.error})"
    )
    obj = _found(namespace, Refusal("NamespaceNotFound", gone, 403), unreadable)
    annotations = annotations_of(obj)
    result = evaluate_policy(role_arn, caller.namespace, annotations, config.base_role_arn)
    if not result.permitted:
        message = for_container(result.message, container) if container else result.message
        raise Refusal("RoleNotPermitted", message, 403)


def _bad_annotation(caller: Caller, exc: Refusal) -> Refusal:
    """A refusal of the pod's annotations, as the broker answers it (403, naming the pod)."""
    return Refusal("BadPodAnnotation", f"{exc.message} ({caller.label})")


def _pod_options(caller: Caller, pod: Mapping[str, Any], config: Settings) -> PodOptions:
    try:
        return read_pod_options(annotations_of(pod), config.session_duration, config.token_mode)
    except Refusal as exc:
        raise _bad_annotation(caller, exc) from None


def session_name_for(caller: Caller, override: str | None, container: str = "") -> str:
    """`<namespace>.<pod>`, or `<namespace>.<annotation>`: never another namespace's prefix;
    for a container's own role `<namespace>.<pod>.<container>` (or `.<annotation>.<container>`)."""
    if container:
        return container_session_name(caller.namespace, override or caller.pod_name, container)
    if not override:
        return build_session_name(caller.namespace, caller.pod_name)
    try:
        return custom_session_name(caller.namespace, override)
    except Refusal as exc:
        raise _bad_annotation(caller, exc) from None


def authorise(
    caller: Caller,
    pod: Lookup,
    namespace: Lookup,
    config: Settings,
    sidecar_problem: SidecarProblem,
    container: str = "",
) -> Grant | Refusal:
    """The grant for this caller's pod as things are now, or why there is none.

    `container` asks for that container's own role (sidecred.dev/container-roles);
    "" for the pod's role.
    """
    try:
        pod_object = _check_pod(caller, pod)
        if container:
            role_arn, options = _resolve_container(caller, pod_object, config, container)
        else:
            role_arn = _resolve(caller, pod_object, config)
            options = _pod_options(caller, pod_object, config)
        whose = f"container {q(container)}'s role" if container else "role"
        problem = sidecar_problem(pod_object, config)
        if problem is not None:
            raise Refusal(
                "NoCanonicalSidecar",
                f"sidecred broker: {caller.label} does not run sidecred's broker-mode sidecar "
                f"for {whose} {q(role_arn)}: {problem}",
                403,
            )
        _check_policy(caller, role_arn, namespace, config, container)
        session_name = session_name_for(caller, options.session_name, container)
    except Refusal as refusal:
        return refusal
    return Grant(
        role_arn=role_arn,
        session_name=session_name,
        source_identity=build_session_name(caller.namespace, caller.pod_name),
        duration=options.session_duration,
        external_id=options.external_id,
        tags=session_tags(
            caller.namespace, caller.pod_name, caller.pod_uid, caller.service_account
        ),
        pod_uid=caller.pod_uid,
        container=container,
    )
