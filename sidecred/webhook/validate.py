"""Checks for the validating webhook (SECURITY.md, Paths 1-3), run after every mutation.

Pure functions over plain pod dicts; each raises Refusal with a stable reason
and a message that says what to do.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sidecred.pods.annotations import (
    CONTAINER_ROLES_KEY,
    INJECTED_KEY,
    INJECTED_LABEL,
    annotations_of,
    q,
)
from sidecred.pods.canonical import forged_reason, token_audiences
from sidecred.pods.names import CONTAINER_TOKEN_VOLUME_PREFIX, SA_TOKEN_VOLUME, SIDECAR_NAME
from sidecred.pods.pod import env_value, iter_containers, mounted_volumes
from sidecred.pods.refusal import Refusal
from sidecred.pods.settings import Settings
from sidecred.pods.sidecar_spec import FULL_URI, Injection, expected_uri
from sidecred.webhook.isolation import check_isolation
from sidecred.webhook.mutate import foreign_endpoint


def runs_sidecar(container: Mapping[str, Any], config: Settings) -> bool:
    """The sidecar itself, or a container that could act as one."""
    return container.get("name") == SIDECAR_NAME or forged_reason(container, config) is not None


def check_update(old: Mapping[str, Any], new: Mapping[str, Any], config: Settings) -> None:
    """On UPDATE the roles are fixed: the pod's and its containers' annotations, the injection
    record and the sidecar image."""
    old_ann, new_ann = annotations_of(old), annotations_of(new)
    for key in (config.annotation_key, CONTAINER_ROLES_KEY, INJECTED_KEY):
        _unchanged(
            "role-changed",
            f"annotation {key}",
            old_ann.get(key),
            new_ann.get(key),
            "change the pod template and let the controller recreate the pod",
        )
    # Every container that runs the sidecar, not only the one named sidecred: a second
    # sidecar admitted at CREATE must not turn into an arbitrary image later either.
    new_images = {c.get("name"): c.get("image") for _, _, c in iter_containers(new)}
    for _, _, container in iter_containers(old):
        if not runs_sidecar(container, config):
            continue
        name = container.get("name", "")
        _unchanged(
            "image-changed",
            f"the {q(name)} container runs the credential sidecar, so its image",
            container.get("image"),
            new_images.get(name),
            "recreate the pod instead",
        )


def _shown(value: object) -> str:
    return "unset" if value is None else q(str(value), 200)


def _unchanged(reason: str, what: str, before: object, after: object, instead: str) -> None:
    """Refuse an UPDATE that changes what must stay as admitted."""
    if before != after:
        raise Refusal(
            reason,
            f"sidecred: {what} cannot change on an existing pod (was {_shown(before)}, "
            f"now {_shown(after)}); {instead}",
        )


def check_injected_label(old: Mapping[str, Any], new: Mapping[str, Any], config: Settings) -> None:
    """A pod that runs the sidecar keeps its injected label: the broker's and the webhook's pod
    watches select by it, and a pod that leaves their selector is one they no longer follow
    (the broker would not hear of its deletion)."""
    before = ((old.get("metadata") or {}).get("labels") or {}).get(INJECTED_LABEL)
    after = ((new.get("metadata") or {}).get("labels") or {}).get(INJECTED_LABEL)
    if before is None or before == after:
        return
    if not any(runs_sidecar(container, config) for _, _, container in iter_containers(old)):
        return
    raise Refusal(
        "injected-label-removed",
        f"sidecred: label {INJECTED_LABEL} cannot change on a pod that runs the credential "
        f"sidecar (was {_shown(before)}, now {_shown(after)}); sidecred follows the pod by it. "
        "Recreate the pod without the role annotation instead",
    )


def check_ephemeral(old: Mapping[str, Any], new: Mapping[str, Any], config: Settings) -> None:
    """Refuse new ephemeral containers that would share the sidecar's processes, files or token.

    In a pod with the sidecar they obey the CREATE rule (isolation.check_isolation):
    a pod admitted with a shared process namespace gets no new ones, and none may be
    privileged, add a node capability or mount a hostPath over the kubelet's pods.
    """
    protected = {c.get("name") for _, _, c in iter_containers(new) if runs_sidecar(c, config)}
    protected.add(SIDECAR_NAME)
    # The sidecar's own token, and the auth tokens of containers with a role of their own
    # (a debug container is none of them).
    sidecred_volumes = {SA_TOKEN_VOLUME} | {
        v.get("name")
        for v in (new.get("spec") or {}).get("volumes") or []
        if set(token_audiences(v)) & config.sidecred_audiences
        or str(v.get("name", "")).startswith(CONTAINER_TOKEN_VOLUME_PREFIX)
    }
    existing = {c.get("name") for c in (old.get("spec") or {}).get("ephemeralContainers") or []}
    # Admitted before; judging them again would block every later debug container.
    added = [
        c
        for c in (new.get("spec") or {}).get("ephemeralContainers") or []
        if c.get("name") not in existing
    ]
    for container in added:
        name = container.get("name", "")
        target = container.get("targetContainerName")
        if target in protected:
            raise Refusal(
                "debug-target",
                f"sidecred: ephemeral container {q(name)} targets {q(target)}, the credential "
                "sidecar; it would share the sidecar's processes and files. Debug an application "
                "container instead (kubectl debug --target=<app container>)",
            )
        if mounted := sorted(sidecred_volumes & mounted_volumes(container)):
            raise Refusal(
                "debug-target",
                f"sidecred: ephemeral container {q(name)} mounts {q(mounted[0])}, which only "
                "the sidecar may read",
            )
        if why := forged_reason(container, config):
            raise Refusal(
                "forged-sidecar",
                f"sidecred: ephemeral container {q(name)} {why}; only the sidecar the webhook "
                "adds may do that",
            )
    if added and any(runs_sidecar(c, config) for _, _, c in iter_containers(new)):
        label = f"pod {q(str((new.get('metadata') or {}).get('name', '')))}"
        check_isolation(
            new, label, [("ephemeral container", c) for c in added], volumes_in_use=False
        )


def check_app_containers(pod: Mapping[str, Any], injection: Injection) -> None:
    """Application containers use only this pod's sidecar, each at its own role's URI.

    That no container but the sidecar mounts its token is canonical.check_sidecar's job.
    """
    for _, _, container in iter_containers(pod):
        if container.get("name") == SIDECAR_NAME:
            continue
        name = container.get("name", "")
        if name in injection.options.skip_containers:
            continue
        expected = expected_uri(injection, name)
        uri = env_value(container, FULL_URI)
        if expected is not None and uri is not None and uri != expected:
            raise foreign_endpoint(name, uri, expected)
