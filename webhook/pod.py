"""Reading pods as plain dicts: sidecred's reserved names, pod annotations, and shape checks.

Pods stay plain JSON dicts from the AdmissionReview: typed client models drop
fields they don't know (that is how other webhooks lost `restartPolicy: Always`
on native sidecars).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from sidecred.sidecar.config import (
    ENV_ROLE_ARN,
    MAX_SESSION_DURATION,
    MIN_SESSION_DURATION,
    TOKEN_MODES,
)

# --- sidecred's reserved names and paths ----------------------------------------
SIDECAR_NAME = "sidecred"
TOKEN_VOLUME = (
    "sidecred-token"  # memory emptyDir: the endpoint's auth token, written by the sidecar
)
SA_TOKEN_VOLUME = "sidecred-sa-token"  # projected service-account token: the sidecar's only
RESERVED_VOLUMES = (TOKEN_VOLUME, SA_TOKEN_VOLUME)
TOKEN_DIR = "/var/run/sidecred"
TOKEN_FILE = TOKEN_DIR + "/token"
SA_TOKEN_DIR = "/var/run/secrets/sidecred/serviceaccount"
SA_TOKEN_FILE = SA_TOKEN_DIR + "/token"
SIDECAR_COMMAND = ["sidecred", "sidecar"]

# --- pod annotations -------------------------------------------------------------
INJECTED_KEY = "sidecred.dev/injected"  # bookkeeping: the role ARN the sidecar was injected for
EXTERNAL_ID_KEY = "iam.amazonaws.com/external-id"
SESSION_NAME_KEY = "iam.amazonaws.com/session-name"
SKIP_CONTAINERS_KEY = "sidecred.dev/skip-containers"
SESSION_DURATION_KEY = "sidecred.dev/session-duration"
TOKEN_MODE_KEY = "sidecred.dev/token-mode"

CONTAINER_LISTS = ("initContainers", "containers")

# STS's own rules for these values.
EXTERNAL_ID_RE = re.compile(r"[A-Za-z0-9_+=,.@:/-]{2,1224}")
SESSION_NAME_RE = re.compile(r"[A-Za-z0-9_+=,.@-]{2,64}")
CONTAINER_NAME_RE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


class Refusal(Exception):
    """A pod sidecred will not admit: a stable reason label and a readable message."""

    def __init__(self, reason: str, message: str, code: int = 403) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.code = code


@dataclass(frozen=True)
class PodOptions:
    """The per-pod settings read from the pod's annotations, with config defaults filled in."""

    session_duration: int
    token_mode: str
    external_id: str | None = None
    session_name: str | None = None
    skip_containers: frozenset[str] = frozenset()


def q(value: str) -> str:
    """Quote a value for a message."""
    return json.dumps(value)


def annotations_of(obj: Mapping[str, Any]) -> dict[str, str]:
    return (obj.get("metadata") or {}).get("annotations") or {}


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
    kind = request.get("kind") or {}
    resource = request.get("resource") or {}
    return (
        kind.get("group", "") == ""
        and kind.get("kind") == "Pod"
        and resource.get("group", "") == ""
        and resource.get("resource") == "pods"
    )


def iter_containers(pod: Mapping[str, Any]) -> Iterator[tuple[str, int, dict[str, Any]]]:
    """(list name, index, container) for every init container and container."""
    spec = pod.get("spec") or {}
    for list_name in CONTAINER_LISTS:
        for index, container in enumerate(spec.get(list_name) or []):
            yield list_name, index, container


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


def is_sidecar_like(container: Mapping[str, Any]) -> bool:
    """A container that runs sidecred's sidecar or holds what only the sidecar may hold."""
    command = list(container.get("command") or []) + list(container.get("args") or [])
    return (
        container.get("name") == SIDECAR_NAME
        or command[:2] == SIDECAR_COMMAND
        or has_env(container, ENV_ROLE_ARN)
    )


def find_sidecar(pod: Mapping[str, Any]) -> tuple[str, int, dict[str, Any]] | None:
    """The container named `sidecred`, in initContainers or containers."""
    for list_name, index, container in iter_containers(pod):
        if container.get("name") == SIDECAR_NAME:
            return list_name, index, container
    return None


def reserved_names_present(pod: Mapping[str, Any]) -> list[str]:
    """sidecred's container and volume names (and sidecar-like containers) found in the pod."""
    found = [
        f"container {q(c.get('name', ''))}"
        for _, _, c in iter_containers(pod)
        if is_sidecar_like(c)
    ]
    volumes = {v.get("name") for v in (pod.get("spec") or {}).get("volumes") or []}
    found += [f"volume {q(name)}" for name in RESERVED_VOLUMES if name in volumes]
    return found


def read_pod_options(
    annotations: Mapping[str, str], session_duration: int, token_mode: str
) -> PodOptions:
    """Per-pod settings from annotations over the config defaults; Refusal on a bad value."""
    problems = []
    duration = session_duration
    raw = annotations.get(SESSION_DURATION_KEY)
    if raw is not None:
        try:
            duration = int(raw.strip())
        except ValueError:
            problems.append(
                f"{SESSION_DURATION_KEY}={q(raw[:40])} is not a whole number of seconds"
            )
        else:
            if not MIN_SESSION_DURATION <= duration <= MAX_SESSION_DURATION:
                problems.append(
                    f"{SESSION_DURATION_KEY}={duration} is outside {MIN_SESSION_DURATION}-"
                    f"{MAX_SESSION_DURATION} seconds (SDKs refresh when under 15 minutes remain)"
                )
    mode = annotations.get(TOKEN_MODE_KEY, token_mode)
    if mode not in TOKEN_MODES:
        problems.append(f"{TOKEN_MODE_KEY}={q(mode[:40])} is not one of {', '.join(TOKEN_MODES)}")
    external_id = annotations.get(EXTERNAL_ID_KEY)
    if external_id is not None and not EXTERNAL_ID_RE.fullmatch(external_id):
        problems.append(
            f"{EXTERNAL_ID_KEY} must be 2-1224 characters of letters, digits and _+=,.@:/-"
        )
    session_name = annotations.get(SESSION_NAME_KEY)
    if session_name is not None and not SESSION_NAME_RE.fullmatch(session_name):
        problems.append(
            f"{SESSION_NAME_KEY}={q(session_name[:80])} must be 2-64 characters of letters, digits and _+=,.@-"
        )
    skip: set[str] = set()
    raw_skip = annotations.get(SKIP_CONTAINERS_KEY)
    if raw_skip is not None:
        for name in (part.strip() for part in raw_skip.split(",")):
            if not name:
                continue
            if not CONTAINER_NAME_RE.fullmatch(name):
                problems.append(
                    f"{SKIP_CONTAINERS_KEY} entry {q(name[:80])} is not a container name"
                )
            elif name == SIDECAR_NAME:
                problems.append(f"{SKIP_CONTAINERS_KEY} cannot name the sidecar {q(SIDECAR_NAME)}")
            skip.add(name)
    if problems:
        raise Refusal("bad-annotation", "sidecred: invalid pod annotations: " + "; ".join(problems))
    return PodOptions(
        session_duration=duration,
        token_mode=mode,
        external_id=external_id,
        session_name=session_name,
        skip_containers=frozenset(skip),
    )


def _is_str_map(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())


def check_pod_shape(pod: Any, where: str = "request.object") -> None:
    """Refuse (400) an object whose fields sidecred reads have the wrong JSON types.

    The API server only sends well-typed pods, but anyone who can reach the
    webhook can send anything; this turns junk into a clear answer, never a crash.
    """
    problems = []
    if not isinstance(pod, dict):
        raise Refusal("bad-request", f"sidecred: {where} is not a JSON object", 400)
    metadata = pod.get("metadata")
    metadata = {} if metadata is None else metadata
    if not isinstance(metadata, dict):
        problems.append("metadata is not an object")
    else:
        for key in ("annotations", "labels"):
            if metadata.get(key) is not None and not _is_str_map(metadata[key]):
                problems.append(f"metadata.{key} is not a map of strings")
        for key in ("name", "namespace", "generateName"):
            if metadata.get(key) is not None and not isinstance(metadata[key], str):
                problems.append(f"metadata.{key} is not a string")
        owners = metadata.get("ownerReferences")
        if owners is not None and not (
            isinstance(owners, list) and all(isinstance(o, dict) for o in owners)
        ):
            problems.append("metadata.ownerReferences is not a list of objects")
    spec = pod.get("spec")
    spec = {} if spec is None else spec
    if not isinstance(spec, dict):
        problems.append("spec is not an object")
        spec = {}
    for list_name in (*CONTAINER_LISTS, "ephemeralContainers", "volumes"):
        items = spec.get(list_name)
        if items is None:
            continue
        if not isinstance(items, list) or not all(
            isinstance(i, dict) and isinstance(i.get("name"), str) for i in items
        ):
            problems.append(f"spec.{list_name} is not a list of named objects")
            continue
        if list_name == "volumes":
            continue
        for item in items:
            for key, field in (("env", "value"), ("volumeMounts", "mountPath")):
                entries = item.get(key)
                if entries is None:
                    continue
                if not (
                    isinstance(entries, list)
                    and all(isinstance(e, dict) and isinstance(e.get("name"), str) for e in entries)
                ):
                    problems.append(
                        f"spec.{list_name}[{item['name']}].{key} is not a list of named objects"
                    )
                    continue
                for entry in entries:
                    if entry.get(field) is not None and not isinstance(entry[field], str):
                        problems.append(
                            f"spec.{list_name}[{item['name']}].{key}[{entry['name']}].{field} "
                            "is not a string"
                        )
            for key in ("command", "args"):
                value = item.get(key)
                if value is not None and not (
                    isinstance(value, list) and all(isinstance(v, str) for v in value)
                ):
                    problems.append(
                        f"spec.{list_name}[{item['name']}].{key} is not a list of strings"
                    )
            for key in ("image", "targetContainerName", "restartPolicy"):
                value = item.get(key)
                if value is not None and not isinstance(value, str):
                    problems.append(f"spec.{list_name}[{item['name']}].{key} is not a string")
    if problems:
        raise Refusal(
            "bad-request", f"sidecred: {where} is not a valid pod: " + "; ".join(problems), 400
        )
