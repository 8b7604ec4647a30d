"""Which container may hold which auth token: the canonical sidecar's container-roles property.

With `sidecred.dev/container-roles` each role has its own auth token, and one
container's token must never open another's credentials. So, in every pod:

- the sidecar's SIDECRED_CONTAINER_ROLES is exactly the webhook's for the pod's
  annotations, and no two roles share a token;
- a container's own token volume `sidecred-token-<c>` exists only as the webhook
  builds it and is mounted by the sidecar and `<c>` alone;
- the pod role's token volume is not mounted by a container that has a role of its
  own or none (`""`), and no container carries another role's token in its env.

Pure: plain pod dicts and the planned Injection in, the first problem out.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from sidecred.pods.annotations import CONTAINER_ROLES_KEY, q
from sidecred.pods.names import SIDECAR_NAME, TOKEN_VOLUME, is_token_volume
from sidecred.pods.pod import all_containers, env_value, find_sidecar
from sidecred.pods.refusal import Refusal
from sidecred.pods.sidecar_spec import (
    AUTH_TOKEN,
    ENV_CONTAINER_ROLES,
    Injection,
    build_volumes,
    container_roles_env,
    entry_field,
    token_mount,
)
from sidecred.sidecar import config as sc


def _forged(message: str) -> Refusal:
    return Refusal("forged-sidecar", f"sidecred: {message}")


def sidecar_tokens(sidecar: Mapping[str, Any]) -> dict[str, str]:
    """role -> auth token in a sidecar's env ("" for the pod's role), token mode env."""
    tokens: dict[str, str] = {}
    if pod_token := env_value(sidecar, sc.ENV_AUTH_TOKEN):
        tokens[""] = pod_token
    return tokens | entry_field(sidecar, "auth_token")


def _roles_env_problem(
    sidecar: Mapping[str, Any], injection: Injection, tokens: Mapping[str, str]
) -> Refusal | None:
    raw = env_value(sidecar, ENV_CONTAINER_ROLES)
    expected = container_roles_env(injection)
    try:
        actual = json.loads(raw) if raw is not None else None
    except (ValueError, RecursionError):
        actual = raw
    if (actual or None) != (expected or None):
        return _forged(
            f"the {q(SIDECAR_NAME)} container's {ENV_CONTAINER_ROLES} is not what the webhook "
            f"builds from the pod's {CONTAINER_ROLES_KEY}; remove the sidecar and let the "
            "webhook add it"
        )
    if len(set(tokens.values())) != len(tokens):
        return _forged(
            f"the {q(SIDECAR_NAME)} container gives two roles the same auth token; each role's "
            "token is its own"
        )
    return None


def _volume_problem(pod: Mapping[str, Any], injection: Injection | None) -> Refusal | None:
    """Container token volumes only as the webhook builds them for this pod's map."""
    expected = {v["name"]: v for v in build_volumes(injection)} if injection else {}
    for volume in (pod.get("spec") or {}).get("volumes") or []:
        name = str(volume.get("name", ""))
        if name == TOKEN_VOLUME or not is_token_volume(name):
            continue  # the pod role's token volume: audience_problem compares it
        if name not in expected:
            return _forged(
                f"volume {q(name)} is reserved for the auth token of a container with its own "
                f"role in {CONTAINER_ROLES_KEY}, and this pod gives no container that role "
                "and token; remove the volume"
            )
        if volume != expected[name]:
            return _forged(f"volume {q(name)} is not the memory emptyDir sidecred builds")
    return None


def _mount_problem(container: Mapping[str, Any], injection: Injection | None) -> Refusal | None:
    name = str(container.get("name", ""))
    own = token_mount(injection, name) if injection else None
    for mount in container.get("volumeMounts") or []:
        volume = str(mount.get("name", ""))
        if not is_token_volume(volume) or (own is not None and volume == own["name"]):
            continue
        if volume != TOKEN_VOLUME:
            return _forged(
                f"container {q(name)} mounts {q(volume)}, the auth token of another container's "
                f"own role ({CONTAINER_ROLES_KEY}); only that container may mount it"
            )
        if injection is not None and name in injection.no_credentials:
            return _forged(
                f"container {q(name)} mounts {q(volume)}, the pod role's auth token, but "
                f"{CONTAINER_ROLES_KEY} gives it no credentials"
            )
        if injection is not None and injection.credential_of(name) is not None:
            return _forged(
                f"container {q(name)} mounts {q(volume)}, the pod role's auth token, but has "
                f"a role of its own in {CONTAINER_ROLES_KEY}; it may hold only its own token"
            )
    return None


def _env_token_problem(
    container: Mapping[str, Any], tokens: Mapping[str, str], injection: Injection
) -> Refusal | None:
    """A container whose env carries the auth token of a role that is not its own."""
    name = str(container.get("name", ""))
    value = env_value(container, AUTH_TOKEN)
    if not value:
        return None
    own = name if injection.credential_of(name) is not None else ""
    for role, token in tokens.items():
        if token == value and role != own:
            whose = "the pod role's" if role == "" else f"container {q(role)}'s own role's"
            return _forged(
                f"container {q(name)} sets {AUTH_TOKEN} to {whose} auth token; a container "
                "may hold only its own"
            )
    return None


def token_problem(pod: Mapping[str, Any], injection: Injection | None) -> Refusal | None:
    """The first way this pod gives a container an auth token that is not its own, or None.

    `injection` is the canonical plan for the pod (None when it asks for no role).
    """
    if problem := _volume_problem(pod, injection):
        return problem
    found = find_sidecar(pod)
    tokens = sidecar_tokens(found[2]) if found is not None and injection is not None else {}
    if injection is not None and found is not None:
        if problem := _roles_env_problem(found[2], injection, tokens):
            return problem
    for _, _, container in all_containers(pod):
        if container.get("name") == SIDECAR_NAME:
            continue
        if problem := _mount_problem(container, injection):
            return problem
        if injection is not None and (problem := _env_token_problem(container, tokens, injection)):
            return problem
    return None
