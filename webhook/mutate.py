"""The injection patch (DESIGN.md 3.2): explicit JSON Patch ops on the pod as received.

Ops are explicit rather than diffed (`jsonpatch.make_patch` turns one insert
into a cascade of `replace` ops on every shifted container), and ordered so
each op's index is still valid when it applies: per-container env and mounts
first, at their original indices, then the sidecar insertion that shifts them.

Every step checks what is already there, so running on an injected pod adds
nothing twice and only gives the env to containers a later webhook added.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jsonpatch

from sidecred.sidecar import config as sc
from sidecred.webhook.annotations import (
    DEFAULT_CONTAINER_KEY,
    INJECTED_KEY,
    INJECTED_LABEL,
    SESSION_NAME_KEY,
    SKIP_CONTAINERS_KEY,
    PodOptions,
    q,
)
from sidecred.webhook.config import WebhookConfig
from sidecred.webhook.names import (
    SA_TOKEN_DIR,
    SA_TOKEN_FILE,
    SA_TOKEN_VOLUME,
    SIDECAR_COMMAND,
    SIDECAR_NAME,
    TOKEN_DIR,
    TOKEN_FILE,
    TOKEN_VOLUME,
)
from sidecred.webhook.pod import env_value, find_sidecar, has_env, iter_containers
from sidecred.webhook.refusal import Refusal

FULL_URI = "AWS_CONTAINER_CREDENTIALS_FULL_URI"
RELATIVE_URI = "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"
AUTH_TOKEN_FILE = "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"
AUTH_TOKEN = "AWS_CONTAINER_AUTHORIZATION_TOKEN"
REGION_VARS = ("AWS_REGION", "AWS_DEFAULT_REGION")
SIDECAR_UID = 65532  # the distroless "nonroot" user; the image runs as it too
HEALTH_PORT_NAME = "sidecred-health"  # at most 15 characters, a Kubernetes port name limit
WAIT_READY_COMMAND = [*SIDECAR_COMMAND, "--wait-ready"]
SESSION_NAME_MAX = 64  # STS RoleSessionName limit


@dataclass(frozen=True)
class Injection:
    """Everything the patch needs for one pod."""

    role_arn: str
    options: PodOptions
    config: WebhookConfig
    port: int
    token_mode: str
    auth_token: str | None  # token mode env only
    session_name: str | None = None  # always "<namespace>." + the annotation's value


def escape(part: str) -> str:
    """One JSON Pointer reference token (RFC 6901)."""
    return part.replace("~", "~0").replace("/", "~1")


def pointer(*parts: str | int) -> str:
    return "".join("/" + escape(str(p)) for p in parts)


def namespaced_session_name(namespace: str, value: str) -> str:
    """`<namespace>.<value>`, cut to STS's 64 characters with a short hash of the whole.

    The namespace prefix always survives, so no pod can take a session name (or a
    SourceIdentity derived from it) that starts with another namespace's name.
    """
    full = f"{namespace}.{value}"
    if len(full) <= SESSION_NAME_MAX:
        return full
    keep = SESSION_NAME_MAX - 9  # "-" and 8 hex digits
    if len(namespace) + 2 > keep:
        raise Refusal(
            "bad-annotation",
            f"sidecred: namespace {q(namespace)} is too long to prefix the custom session name "
            f"of {SESSION_NAME_KEY}; remove the annotation to use <namespace>.<pod name>",
        )
    return full[:keep] + "-" + hashlib.sha256(full.encode()).hexdigest()[:8]


def plan_injection(
    pod: Mapping[str, Any],
    role_arn: str,
    options: PodOptions,
    config: WebhookConfig,
    new_token: Callable[[], str],
    namespace: str,
) -> Injection:
    """Settle the token (reused from an existing sidecar on reinvocation) and the session name."""
    existing = find_sidecar(pod)
    token = None
    if existing is not None and options.token_mode == "env":
        token = env_value(existing[2], sc.ENV_AUTH_TOKEN) or None
    if options.token_mode == "env" and token is None:
        token = new_token()
    session = options.session_name and namespaced_session_name(namespace, options.session_name)
    return Injection(
        role_arn, options, config, config.sidecar_port, options.token_mode, token, session or None
    )


def _field_env(name: str, field_path: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": field_path}}}


def source_env(cfg: WebhookConfig) -> list[dict[str, Any]]:
    """The env telling the sidecar how to reach its credential source."""
    env: list[dict[str, Any]] = []
    if cfg.credential_source == "web-identity":
        env.append({"name": sc.ENV_WEB_IDENTITY_TOKEN_FILE, "value": SA_TOKEN_FILE})
    elif cfg.credential_source == "broker":
        # URL and CA are required options of the broker source (config_from_args).
        settings = ((sc.ENV_BROKER_URL, cfg.broker_url), (sc.ENV_BROKER_CA, cfg.broker_ca))
        env += [{"name": name, "value": value} for name, value in settings if value]
        env.append({"name": sc.ENV_BROKER_TOKEN_FILE, "value": SA_TOKEN_FILE})
    return env


def sidecar_env(inj: Injection) -> list[dict[str, Any]]:
    """Every setting the sidecar uses, in the pod spec for all to see."""
    cfg, opts = inj.config, inj.options
    native = cfg.sidecar_mode == "native"
    env: list[dict[str, Any]] = [
        {"name": sc.ENV_ROLE_ARN, "value": inj.role_arn},
        {"name": sc.ENV_CREDENTIAL_SOURCE, "value": cfg.credential_source},
        {"name": sc.ENV_SESSION_DURATION, "value": str(opts.session_duration)},
        {"name": sc.ENV_PORT, "value": str(inj.port)},
        {"name": sc.ENV_HEALTH_PORT, "value": str(cfg.health_port)},
        {"name": sc.ENV_TOKEN_MODE, "value": inj.token_mode},
    ]
    if inj.token_mode == "file":
        env.append({"name": sc.ENV_TOKEN_FILE, "value": TOKEN_FILE})
    else:
        env.append({"name": sc.ENV_AUTH_TOKEN, "value": inj.auth_token})
    env += source_env(cfg)
    if opts.external_id:
        env.append({"name": sc.ENV_EXTERNAL_ID, "value": opts.external_id})
    if inj.session_name:
        env.append({"name": sc.ENV_SESSION_NAME, "value": inj.session_name})
    if cfg.region:
        env.append({"name": sc.ENV_REGION, "value": cfg.region})
    return [
        *env,
        {"name": sc.ENV_SIDECAR_MODE, "value": cfg.sidecar_mode},
        # Native sidecars are stopped after the apps exit, so they need no drain.
        {"name": sc.ENV_DRAIN_SECONDS, "value": "0" if native else str(cfg.drain_seconds)},
        _field_env(sc.ENV_POD_NAME, "metadata.name"),
        _field_env(sc.ENV_POD_NAMESPACE, "metadata.namespace"),
        _field_env(sc.ENV_POD_UID, "metadata.uid"),
        _field_env(sc.ENV_SERVICE_ACCOUNT, "spec.serviceAccountName"),
    ]


def uses_sa_token(cfg: WebhookConfig) -> bool:
    """Whether the sidecar gets a projected service-account token (web-identity, broker)."""
    return cfg.credential_source in ("web-identity", "broker")


def build_sidecar(inj: Injection) -> dict[str, Any]:
    """The `sidecred` container spec; its env shows every setting the sidecar uses."""
    cfg = inj.config
    native = cfg.sidecar_mode == "native"
    env = sidecar_env(inj)
    mounts = []
    if inj.token_mode == "file":
        mounts.append({"name": TOKEN_VOLUME, "mountPath": TOKEN_DIR})
    if uses_sa_token(cfg):
        mounts.append({"name": SA_TOKEN_VOLUME, "mountPath": SA_TOKEN_DIR, "readOnly": True})
    sidecar: dict[str, Any] = {
        "name": SIDECAR_NAME,
        "image": cfg.sidecar_image,
        "imagePullPolicy": "IfNotPresent",
        "command": list(SIDECAR_COMMAND),
        "env": env,
        "ports": [{"name": HEALTH_PORT_NAME, "containerPort": cfg.health_port, "protocol": "TCP"}],
        # Ready only once credentials are cached, so later containers start with them.
        # While STS refuses, the sidecar stays up, retries and says why in the probe
        # failure; the kubelet restarts a sidecar whose startup probe keeps failing,
        # which would only reset its backoff, so allow an hour before that.
        "startupProbe": {
            "httpGet": {"path": "/readyz", "port": cfg.health_port},
            "periodSeconds": 1,
            "failureThreshold": 3600,
            "timeoutSeconds": 2,
        },
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": cfg.health_port},
            "periodSeconds": 10,
            "failureThreshold": 3,
            "timeoutSeconds": 2,
        },
        "resources": {
            "requests": {"cpu": cfg.sidecar_cpu_request, "memory": cfg.sidecar_memory_request},
            "limits": {"cpu": cfg.sidecar_cpu_limit, "memory": cfg.sidecar_memory_limit},
        },
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": SIDECAR_UID,
            "runAsGroup": SIDECAR_UID,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "privileged": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if mounts:
        sidecar["volumeMounts"] = mounts
    if native:
        sidecar["restartPolicy"] = "Always"
    else:
        # Container mode: the kubelet starts the next container only after this hook returns.
        sidecar["lifecycle"] = {"postStart": {"exec": {"command": list(WAIT_READY_COMMAND)}}}
    return sidecar


def build_volumes(inj: Injection) -> list[dict[str, Any]]:
    volumes: list[dict[str, Any]] = []
    if inj.token_mode == "file":
        volumes.append({"name": TOKEN_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}})
    if uses_sa_token(inj.config):
        volumes.append(
            {
                "name": SA_TOKEN_VOLUME,
                "projected": {
                    "sources": [
                        {
                            "serviceAccountToken": {
                                "audience": inj.config.sidecar_token_audience,
                                "expirationSeconds": inj.config.token_expiration,
                                "path": "token",
                            }
                        }
                    ]
                },
            }
        )
    return volumes


def app_env(inj: Injection) -> list[dict[str, str]]:
    """The env every application container gets (before skipping what it already sets)."""
    env = [{"name": FULL_URI, "value": sc.credentials_uri(inj.port)}]
    if inj.token_mode == "file":
        env.append({"name": AUTH_TOKEN_FILE, "value": TOKEN_FILE})
    else:
        env.append({"name": AUTH_TOKEN, "value": str(inj.auth_token)})
    return env


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
    uri = sc.credentials_uri(inj.port)
    current = env_value(container, FULL_URI)
    if current is not None and current != uri:
        raise foreign_endpoint(name, current, uri)
    if warning := outranking_env_warning(name, container, inj.role_arn):
        warnings.append(warning)

    wanted = app_env(inj)
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
    if inj.token_mode == "file":
        ops += _token_mount_ops(base, container)
    return ops


def _token_mount_ops(base: str, container: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Mount the auth token's directory read-only, unless mounted or taken by another volume."""
    mounts = container.get("volumeMounts")
    if any(m.get("name") == TOKEN_VOLUME for m in mounts or []):
        return []
    clash = [m for m in mounts or [] if m.get("mountPath", "").rstrip("/") == TOKEN_DIR]
    if clash:
        raise Refusal(
            "mount-conflict",
            f"sidecred: container {q(container.get('name', ''))} mounts volume "
            f"{q(clash[0].get('name', ''))} at {TOKEN_DIR}, which sidecred reserves for its token",
        )
    mount = {"name": TOKEN_VOLUME, "mountPath": TOKEN_DIR, "readOnly": True}
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
    wanted = {INJECTED_KEY: inj.role_arn}
    apps = [c.get("name") for c in (pod.get("spec") or {}).get("containers") or []]
    apps = [name for name in apps if name != SIDECAR_NAME]
    if inj.config.sidecar_mode == "container" and apps:
        current = annotations.get(DEFAULT_CONTAINER_KEY)
        wanted[DEFAULT_CONTAINER_KEY] = current if current in apps else apps[0]
    ops = [] if "metadata" in pod else [{"op": "add", "path": "/metadata", "value": {}}]
    ops += _map_ops(pod, "annotations", wanted)
    ops += _map_ops(pod, "labels", {INJECTED_LABEL: "true"})
    return ops


def init_before_sidecar(pod: Mapping[str, Any], config: WebhookConfig) -> list[str]:
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
        ops += _container_ops(list_name, index, container, inj, warnings)

    present = {v.get("name") for v in spec.get("volumes") or []}
    new_volumes = [v for v in build_volumes(inj) if v["name"] not in present]
    ops += append_ops("/spec/volumes", spec.get("volumes"), new_volumes)
    if add_sidecar:
        ops += sidecar_ops(pod, inj, warnings)
    ops += pull_secret_ops(pod, inj.config)
    ops += metadata_ops(pod, inj)
    return ops, warnings


def pull_secret_ops(pod: Mapping[str, Any], config: WebhookConfig) -> list[dict[str, Any]]:
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
    return jsonpatch.apply_patch(copy.deepcopy(dict(pod)), copy.deepcopy(ops))
