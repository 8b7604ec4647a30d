"""A role per container: the `sidecred.dev/container-roles` annotation, read and bounded. Pure.

The annotation is a JSON object from container name to role (a role name or ARN,
resolved like the pod's role annotation); `""` gives that container no
credentials. Containers not in the map get the pod's role, when it has one; a
pod may carry the map alone.

Anyone who can create a pod writes this value, so it is bounded before it is
parsed (size), while it is parsed (duplicate names) and before any name is looked
up (entries). Every problem is a `bad-annotation` denial that says what a valid
value looks like.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from sidecred.pods.annotations import CONTAINER_ROLES_KEY, SKIP_CONTAINERS_KEY, annotations_of, q
from sidecred.pods.dns_names import is_dns1123_label
from sidecred.pods.names import CONTAINER_TOKEN_VOLUME_PREFIX, SIDECAR_NAME
from sidecred.pods.pod import all_containers
from sidecred.pods.refusal import Refusal
from sidecred.pods.roles import RoleError, resolve_role

MAX_CHARS = 16 * 1024  # 64 full ARNs fit with room to spare
MAX_ENTRIES = 64  # as many roles as one sidecar serves
# The token volume `sidecred-token-<container>` must be a DNS label of at most 63 characters.
MAX_ROLE_CONTAINER_CHARS = 63 - len(CONTAINER_TOKEN_VOLUME_PREFIX)
EXAMPLE = '{"backup": "backup-writer", "metrics": ""}'
_JSON_TYPES = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}


@dataclass(frozen=True)
class ContainerRoles:
    """What the annotation gives each container it names."""

    own: tuple[tuple[str, str], ...] = ()  # (container, resolved role ARN), by container name
    none: frozenset[str] = frozenset()  # containers mapped to "": no credentials

    def role_of(self, container: str) -> str | None:
        """The container's own role ARN, or None when it has none of its own."""
        return next((arn for name, arn in self.own if name == container), None)


NO_CONTAINER_ROLES = ContainerRoles()


def _refuse(problem: str) -> Refusal:
    return Refusal("bad-annotation", f"sidecred: invalid pod annotations: {problem}")


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return "a number"
    return _JSON_TYPES.get(type(value), type(value).__name__)


def _object_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object that names no key twice (parsers disagree on which of two wins)."""
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _refuse(f"{CONTAINER_ROLES_KEY} names container {q(key, 80)} twice")
        result[key] = value
    return result


def parse_container_roles(raw: str) -> dict[str, str]:
    """The annotation's entries, container -> role value as written ("" = none).

    Raises Refusal when the value is too long, not JSON, not an object, names a
    container twice, has a value that is not a string, or has too many entries.
    """
    if len(raw) > MAX_CHARS:
        raise _refuse(f"{CONTAINER_ROLES_KEY} is {len(raw)} characters; the limit is {MAX_CHARS}")
    try:
        data = json.loads(raw, object_pairs_hook=_object_pairs)
    except (ValueError, RecursionError) as exc:
        detail = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
        raise _refuse(
            f"{CONTAINER_ROLES_KEY}={q(raw, 80)} is not JSON ({detail}); expected an object "
            f"from container name to role, such as {EXAMPLE}"
        ) from None
    if not isinstance(data, dict):
        raise _refuse(
            f"{CONTAINER_ROLES_KEY} is {_json_type(data)}, not an object from container name "
            f"to role, such as {EXAMPLE}"
        )
    if len(data) > MAX_ENTRIES:
        raise _refuse(f"{CONTAINER_ROLES_KEY} has {len(data)} entries; the limit is {MAX_ENTRIES}")
    for name, value in data.items():
        if not isinstance(value, str):
            raise _refuse(
                f"{CONTAINER_ROLES_KEY} gives container {q(name, 80)} {_json_type(value)}; each "
                'value is a role name or ARN, or "" for no credentials'
            )
    return data


def _pod_containers(pod: Mapping[str, Any]) -> Iterator[str]:
    """Names of the pod's init, regular and ephemeral containers, the sidecar's excepted."""
    for _, _, container in all_containers(pod):
        name = container.get("name")
        if isinstance(name, str) and name != SIDECAR_NAME:
            yield name


def _check_names(entries: Mapping[str, str], pod: Mapping[str, Any]) -> None:
    containers = sorted(set(_pod_containers(pod)))
    if len(entries) > len(containers):
        raise _refuse(
            f"{CONTAINER_ROLES_KEY} has {len(entries)} entries, but the pod has only "
            f"{len(containers)} containers"
        )
    for name in entries:
        if name == SIDECAR_NAME:
            raise _refuse(f"{CONTAINER_ROLES_KEY} cannot name the sidecar {q(SIDECAR_NAME)}")
        if not is_dns1123_label(name):  # what Kubernetes allows as a container name
            raise _refuse(
                f"{CONTAINER_ROLES_KEY} names {q(name, 80)}, which is not a container name"
            )
    unknown = sorted(set(entries) - set(containers))
    if unknown:
        raise _refuse(
            f"{CONTAINER_ROLES_KEY} names {', '.join(q(n) for n in unknown)}, which "
            f"{'is not a container' if len(unknown) == 1 else 'are not containers'} of this "
            f"pod (its containers: {', '.join(q(n) for n in containers[:20])})"
        )


def _resolve(entries: Mapping[str, str], base_role_arn: str | None) -> dict[str, str]:
    """container -> role ARN for every container given a role."""
    resolved = {}
    for name, value in sorted(entries.items()):
        if value == "":
            continue
        if len(name) > MAX_ROLE_CONTAINER_CHARS:
            raise _refuse(
                f"{CONTAINER_ROLES_KEY} gives container {q(name)} a role, and its name is "
                f"{len(name)} characters; a container with its own role may have at most "
                f"{MAX_ROLE_CONTAINER_CHARS} (its token volume is "
                f"{CONTAINER_TOKEN_VOLUME_PREFIX}<container>, at most 63 characters)"
            )
        try:
            resolved[name] = resolve_role(value, base_role_arn, f"{CONTAINER_ROLES_KEY}[{q(name)}]")
        except RoleError as exc:
            raise _refuse(str(exc)) from None
    return resolved


def _check_roles(
    resolved: Mapping[str, str], pod_role_arn: str | None, skip: frozenset[str]
) -> None:
    holder: dict[str, str] = {}
    for name, arn in resolved.items():
        if name in skip:
            raise _refuse(
                f"container {q(name)} is in {SKIP_CONTAINERS_KEY}, which gives it no credentials, "
                f"and has a role in {CONTAINER_ROLES_KEY}; keep it in one of them"
            )
        if arn == pod_role_arn:
            raise _refuse(
                f"{CONTAINER_ROLES_KEY} gives container {q(name)} the pod's own role {q(arn)}; "
                "leave it out of the map (containers not in it get the pod's role)"
            )
        if arn in holder:
            raise _refuse(
                f"{CONTAINER_ROLES_KEY} gives role {q(arn)} to both {q(holder[arn])} and "
                f"{q(name)}; a role belongs to one container (to share one, make it the pod's "
                "role and leave those containers out of the map)"
            )
        holder[arn] = name


def read_container_roles(
    pod: Mapping[str, Any],
    pod_role_arn: str | None,
    base_role_arn: str | None,
    skip: frozenset[str] = frozenset(),
) -> ContainerRoles:
    """What the pod's annotation gives each container it names (empty without the annotation).

    Raises Refusal (bad-annotation) for any value that is not a usable map for this pod.
    """
    raw = annotations_of(pod).get(CONTAINER_ROLES_KEY)
    if raw is None:
        return NO_CONTAINER_ROLES
    entries = parse_container_roles(raw)
    _check_names(entries, pod)
    resolved = _resolve(entries, base_role_arn)
    _check_roles(resolved, pod_role_arn, skip)
    if pod_role_arn is None and not resolved:
        raise _refuse(
            f"{CONTAINER_ROLES_KEY} gives no container a role and the pod has no pod-level "
            "role; name a role for a container, or remove the annotation"
        )
    none = frozenset(name for name, value in entries.items() if value == "")
    return ContainerRoles(tuple(sorted(resolved.items())), none)
