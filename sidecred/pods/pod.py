"""Reading pods as plain dicts: containers, env, mounts, the request's pod, and shape checks.

Pods stay plain JSON dicts from the AdmissionReview: typed client models drop
fields they don't know (that is how other webhooks lost `restartPolicy: Always`
on native sidecars).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, cast

from sidecred.pods.annotations import q
from sidecred.pods.names import SIDECAR_NAME
from sidecred.pods.refusal import Refusal
from sidecred.pods.shape import MAX_CONTAINERS, container_count, pod_problems

CONTAINER_LISTS = ("initContainers", "containers")


def is_core_request(request: Mapping[str, Any], kind: str, resource: str) -> bool:
    """The request is about a core-group `kind` object on the core `resource`."""
    request_kind = request.get("kind") or {}
    request_resource = request.get("resource") or {}
    return (
        request_kind.get("group", "") == ""
        and request_kind.get("kind") == kind
        and request_resource.get("group", "") == ""
        and request_resource.get("resource") == resource
    )


def pod_namespace(request: Mapping[str, Any]) -> str:
    """The pod's namespace: object.metadata.namespace, else request.namespace."""
    obj = request.get("object")
    metadata = obj.get("metadata") if isinstance(obj, dict) else None
    namespace = metadata.get("namespace") if isinstance(metadata, dict) else None
    if isinstance(namespace, str) and namespace:
        return namespace
    fallback = request.get("namespace")
    return fallback if isinstance(fallback, str) else ""


def pod_label(request: Mapping[str, Any]) -> str:
    """How messages name the pod; a generateName pod has no name at admission."""
    obj = request.get("object")
    metadata = obj.get("metadata") if isinstance(obj, dict) else None
    metadata = metadata if isinstance(metadata, dict) else {}
    name = metadata.get("name") or request.get("name")
    if name:
        return f"pod {q(name)}"
    if metadata.get("generateName"):
        return f"pod {q(metadata['generateName'] + '*')}"
    return "pod"


def is_pod_request(request: Mapping[str, Any]) -> bool:
    """A Pod on `pods`, whatever the subresource (ephemeralcontainers included)."""
    return is_core_request(request, "Pod", "pods")


def iter_containers(pod: Mapping[str, Any]) -> Iterator[tuple[str, int, dict[str, Any]]]:
    """(list name, index, container) for every init container and container."""
    spec = pod.get("spec") or {}
    for list_name in CONTAINER_LISTS:
        for index, container in enumerate(spec.get(list_name) or []):
            yield list_name, index, container


def all_containers(pod: Mapping[str, Any]) -> Iterator[tuple[str, int, dict[str, Any]]]:
    """Init, regular and ephemeral containers."""
    yield from iter_containers(pod)
    for index, container in enumerate((pod.get("spec") or {}).get("ephemeralContainers") or []):
        yield "ephemeralContainers", index, container


def env_value(container: Mapping[str, Any], name: str) -> str | None:
    """The literal value of an env entry; "" for a valueFrom entry; None if absent.

    With repeated names the kubelet uses the last entry, so that is the one read
    here: reading the first let `[ROLE=permitted, ROLE=forbidden]` pass the checks.
    """
    for entry in reversed(container.get("env") or []):
        if entry.get("name") == name:
            return entry.get("value", "") if "valueFrom" not in entry else ""
    return None


def has_env(container: Mapping[str, Any], name: str) -> bool:
    return any(entry.get("name") == name for entry in container.get("env") or [])


def mounted_volumes(container: Mapping[str, Any]) -> set[str]:
    return {m.get("name") for m in container.get("volumeMounts") or []}


def find_sidecar(pod: Mapping[str, Any]) -> tuple[str, int, dict[str, Any]] | None:
    """The container named `sidecred`, in initContainers or containers."""
    for list_name, index, container in iter_containers(pod):
        if container.get("name") == SIDECAR_NAME:
            return list_name, index, container
    return None


def check_pod_shape(pod: Any, where: str = "request.object") -> dict[str, Any]:
    """The pod, or refuse (400) one with more than MAX_CONTAINERS containers or one whose
    fields sidecred reads have the wrong JSON types (`pods.shape`).

    The API server only sends well-typed pods, but anyone who can reach the
    webhook can send anything; this turns junk into a clear answer, never a crash.
    """
    count = container_count(pod)
    if count > MAX_CONTAINERS:
        raise Refusal(
            "too-many-containers",
            f"sidecred: {where} has {count} containers (init, regular and ephemeral); "
            f"sidecred admits pods with at most {MAX_CONTAINERS}",
            400,
        )
    if problems := pod_problems(pod):
        raise Refusal(
            "bad-request", f"sidecred: {where} is not a valid pod: " + "; ".join(problems), 400
        )
    return cast("dict[str, Any]", pod)  # pod_problems refused anything but an object
