"""The injection patch (docs/architecture.md 2.1): explicit JSON Patch ops on the pod as received.

Ops are explicit rather than diffed (`jsonpatch.make_patch` turns one insert
into a cascade of `replace` ops on every shifted container), and ordered so
each op's index is still valid when it applies: per-container env and mounts
first, at their original indices, then the sidecar insertion that shifts them.

Every step checks what is already there, so running on an injected pod adds
nothing twice and only gives the env to containers a later webhook added.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import jsonpatch

from sidecred.pods.annotations import (
    DEFAULT_CONTAINER_KEY,
    INJECTED_KEY,
    INJECTED_LABEL,
    SKIP_CONTAINERS_KEY,
    q,
)
from sidecred.pods.names import (
    SIDECAR_NAME,
)
from sidecred.pods.pod import env_value, has_env, iter_containers
from sidecred.pods.refusal import Refusal
from sidecred.pods.settings import Settings
from sidecred.pods.sidecar_spec import (
    AUTH_TOKEN,
    AUTH_TOKEN_FILE,
    FULL_URI,
    REGION_VARS,
    RELATIVE_URI,
    Injection,
    app_env,
    build_sidecar,
    build_volumes,
    expected_uri,
    token_mount,
)


def escape(part: str) -> str:
    """One JSON Pointer reference token (RFC 6901)."""
    return part.replace("~", "~0").replace("/", "~1")


def pointer(*parts: str | int) -> str:
    return "".join("/" + escape(str(p)) for p in parts)


def outranking_env_warning(name: str, container: Mapping[str, Any], role_arn: str) -> str | None:
    """A warning when the container's env makes SDKs pick other credentials first."""
    found = [v for v in ("AWS_ACCESS_KEY_ID", "AWS_PROFILE", RELATIVE_URI) if has_env(container, v)]
    if has_env(container, "AWS_ROLE_ARN") and has_env(container, "AWS_WEB_IDENTITY_TOKEN_FILE"):
        found.append("AWS_ROLE_ARN+AWS_WEB_IDENTITY_TOKEN_FILE")
    if not found:
        return None
    return (
        f"sidecred: container {q(name)} sets {', '.join(found)}, which AWS SDKs use before "
        f"container credentials; it may not get role {q(role_arn)}"
    )


def foreign_endpoint(container: str, uri: str, expected: str) -> Refusal:
    """A container that points the SDK at another credential endpoint than this pod's sidecar."""
    return Refusal(
        "foreign-endpoint",
        f"sidecred: container {q(container)} sets {FULL_URI}={q(uri, 200)}, not this pod's "
        f"sidecar {q(expected)}; remove it, or list the container in {SKIP_CONTAINERS_KEY}",
    )


def _container_ops(
    list_name: str, index: int, container: Mapping[str, Any], inj: Injection, warnings: list[str]
) -> list[dict[str, Any]]:
    """Env and mount ops for one application container; user env is never overwritten."""
    name = container.get("name", "")
    base = pointer("spec", list_name, index)
    ops: list[dict[str, Any]] = []
    uri = expected_uri(inj, name)
    if uri is None:
        return []
    current = env_value(container, FULL_URI)
    if current is not None and current != uri:
        raise foreign_endpoint(name, current, uri)
    cred = inj.credential_of(name)
    role = cred.role_arn if cred is not None else str(inj.role_arn)
    if warning := outranking_env_warning(name, container, role):
        warnings.append(warning)

    wanted = app_env(inj, name)
    if inj.config.region and not any(has_env(container, v) for v in REGION_VARS):
        if container.get("envFrom"):
            # An explicit env entry would silently outrank a region the envFrom source sets.
            warnings.append(
                f"sidecred: container {q(name)} takes env from envFrom, which may set "
                f"AWS_REGION, so sidecred did not add AWS_REGION={q(inj.config.region)}; set it "
                "in the container's env if the envFrom source does not"
            )
        else:
            wanted += [{"name": v, "value": inj.config.region} for v in REGION_VARS]
    for entry in wanted:
        value = env_value(container, entry["name"])
        if (
            value is not None
            and value != entry["value"]
            and entry["name"] in (AUTH_TOKEN, AUTH_TOKEN_FILE)
        ):
            warnings.append(
                f"sidecred: container {q(name)} sets its own {entry['name']}; kept, but the "
                "sidecar will refuse it unless it matches"
            )
    additions = [e for e in wanted if not has_env(container, e["name"])]
    ops += append_ops(base + "/env", container.get("env"), additions)
    mount = token_mount(inj, name)
    if mount is not None:
        ops += _token_mount_ops(base, container, mount)
    return ops


def _token_mount_ops(
    base: str, container: Mapping[str, Any], mount: dict[str, Any]
) -> list[dict[str, Any]]:
    """Mount the auth token's directory read-only, unless mounted or taken by another volume."""
    mounts = container.get("volumeMounts")
    if any(m.get("name") == mount["name"] for m in mounts or []):
        return []
    path = mount["mountPath"]
    clash = [m for m in mounts or [] if m.get("mountPath", "").rstrip("/") == path]
    if clash:
        raise Refusal(
            "mount-conflict",
            f"sidecred: container {q(container.get('name', ''))} mounts volume "
            f"{q(clash[0].get('name', ''))} at {path}, which sidecred reserves for its token",
        )
    return append_ops(base + "/volumeMounts", mounts, [mount])


def append_ops(path: str, current: list[Any] | None, items: list[Any]) -> list[dict[str, Any]]:
    """Add `items` to the list at `path`: the whole list when there is none yet, else appended."""
    if not items:
        return []
    if current is None:
        return [{"op": "add", "path": path, "value": items}]
    return [{"op": "add", "path": path + "/-", "value": item} for item in items]


def sidecar_position(pod: Mapping[str, Any]) -> int:
    """Native mode: right after the last native sidecar (e.g. istio-proxy), else first.

    A mesh proxy must be running before sidecred calls STS: with Istio CNI the
    pod's traffic is redirected before any container starts.
    """
    position = 0
    for index, container in enumerate((pod.get("spec") or {}).get("initContainers") or []):
        if container.get("restartPolicy") == "Always":
            position = index + 1
    return position


def _map_ops(pod: Mapping[str, Any], field: str, wanted: dict[str, str]) -> list[dict[str, Any]]:
    """Ops that make metadata.<field> (annotations or labels) hold `wanted`, keeping the rest."""
    current = (pod.get("metadata") or {}).get(field)
    if current is None:
        return [{"op": "add", "path": pointer("metadata", field), "value": wanted}]
    return [
        {"op": "add", "path": pointer("metadata", field, key), "value": value}
        for key, value in wanted.items()
        if current.get(key) != value
    ]


def metadata_ops(pod: Mapping[str, Any], inj: Injection) -> list[dict[str, Any]]:
    """The injection record, the label sidecred's watchers select by, and in container mode
    the default container for exec and logs.

    Container mode puts the sidecar first in `containers`; without the annotation
    `kubectl exec`/`logs` would pick it. The label is only a hint for list/watch
    (everything read through it is checked again); the annotation holds the role.
    """
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    # The pod's role; "" for a pod whose roles are all its containers' own.
    wanted = {INJECTED_KEY: inj.role_arn or ""}
    names = [c.get("name") for c in (pod.get("spec") or {}).get("containers") or []]
    apps = [name for name in names if isinstance(name, str) and name != SIDECAR_NAME]
    if inj.config.sidecar_mode == "container" and apps:
        current = annotations.get(DEFAULT_CONTAINER_KEY)
        wanted[DEFAULT_CONTAINER_KEY] = current if current in apps else apps[0]
    ops = [] if "metadata" in pod else [{"op": "add", "path": "/metadata", "value": {}}]
    ops += _map_ops(pod, "annotations", wanted)
    ops += _map_ops(pod, "labels", {INJECTED_LABEL: "true"})
    return ops


def init_before_sidecar(pod: Mapping[str, Any], config: Settings) -> list[str]:
    """Native mode: the ordinary init containers that run before the sidecar, in order.

    They run to completion before the sidecar starts, so credential env would only
    make their SDK calls fail; native sidecars (restartPolicy Always) keep running
    and can use it later.
    """
    if config.sidecar_mode != "native":
        return []
    inits = (pod.get("spec") or {}).get("initContainers") or []
    names = [c.get("name") for c in inits]
    position = names.index(SIDECAR_NAME) if SIDECAR_NAME in names else sidecar_position(pod)
    return [str(c.get("name")) for c in inits[:position] if c.get("restartPolicy") != "Always"]


def build_patch(
    pod: Mapping[str, Any], inj: Injection, *, add_sidecar: bool
) -> tuple[list[dict[str, Any]], list[str]]:
    """(JSON Patch ops, warnings) for injecting `inj` into `pod`.

    `add_sidecar` is False when the pod already runs the canonical sidecar
    (canonical.check_sidecar), so a reinvocation only adds what is missing.
    """
    ops: list[dict[str, Any]] = []
    warnings: list[str] = []
    spec = pod.get("spec") or {}
    skip = inj.options.skip_containers

    names = {c.get("name") for _, _, c in iter_containers(pod)}
    for missing in sorted(skip - names):
        warnings.append(
            f"sidecred: sidecred.dev/skip-containers names {q(missing)}, which the pod does not have"
        )

    early = init_before_sidecar(pod, inj.config)
    if early:
        warnings.append(
            f"sidecred: init containers {', '.join(q(n) for n in early)} run before the sidecar "
            "is ready, so they get no credentials; move AWS calls into a container that starts "
            "after it"
        )
    for list_name, index, container in iter_containers(pod):
        if container.get("name") in (SIDECAR_NAME, *skip, *early):
            continue
        if not inj.gets_credentials(container.get("name", "")):
            continue
        ops += _container_ops(list_name, index, container, inj, warnings)

    present = {v.get("name") for v in spec.get("volumes") or []}
    new_volumes = [v for v in build_volumes(inj) if v["name"] not in present]
    ops += append_ops("/spec/volumes", spec.get("volumes"), new_volumes)
    if add_sidecar:
        ops += sidecar_ops(pod, inj, warnings)
    ops += pull_secret_ops(pod, inj.config)
    ops += metadata_ops(pod, inj)
    return ops, warnings


def pull_secret_ops(pod: Mapping[str, Any], config: Settings) -> list[dict[str, Any]]:
    """Append each --sidecar-image-pull-secrets name the pod does not list yet, keeping its own."""
    current = (pod.get("spec") or {}).get("imagePullSecrets")
    present = {s.get("name") for s in current or [] if isinstance(s, dict)}
    missing = [{"name": n} for n in config.sidecar_image_pull_secrets if n not in present]
    return append_ops("/spec/imagePullSecrets", current, missing)


def sidecar_ops(
    pod: Mapping[str, Any], inj: Injection, warnings: list[str]
) -> list[dict[str, Any]]:
    """Insert the sidecar: native mode after the last native sidecar, container mode first."""
    spec = pod.get("spec") or {}
    sidecar = build_sidecar(inj)
    if inj.config.sidecar_mode == "native":
        if spec.get("initContainers") is None:
            return [{"op": "add", "path": "/spec/initContainers", "value": [sidecar]}]
        path = pointer("spec", "initContainers", sidecar_position(pod))
        return [{"op": "add", "path": path, "value": sidecar}]
    if spec.get("initContainers"):
        warnings.append(
            "sidecred: in container mode init containers run before the sidecar starts, "
            "so they cannot get credentials; use native sidecar mode"
        )
    owners = (pod.get("metadata") or {}).get("ownerReferences") or []
    if any(o.get("kind") == "Job" for o in owners if isinstance(o, dict)):
        warnings.append(
            "sidecred: in container mode the sidecar keeps running after a Job's "
            "containers finish, so the Job never completes; use native sidecar mode"
        )
    return [{"op": "add", "path": "/spec/containers/0", "value": sidecar}]


def apply_patch(pod: Mapping[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    """The pod after `ops`, as the API server would apply them."""
    patched: dict[str, Any] = jsonpatch.apply_patch(copy.deepcopy(dict(pod)), copy.deepcopy(ops))
    return patched
