"""The sidecar the webhook injects and the broker expects: its container, volumes and the
app containers' credential env, planned from the pod, its roles and the settings. Pure."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sidecred.pods.annotations import (
    PodOptions,
)
from sidecred.pods.container_roles import NO_CONTAINER_ROLES, ContainerRoles
from sidecred.pods.names import (
    SA_TOKEN_DIR,
    SA_TOKEN_FILE,
    SA_TOKEN_VOLUME,
    SIDECAR_COMMAND,
    SIDECAR_NAME,
    TOKEN_DIR,
    TOKEN_FILE,
    TOKEN_VOLUME,
    container_token_dir,
    container_token_file,
    container_token_volume,
)
from sidecred.pods.pod import env_value, find_sidecar
from sidecred.pods.session import custom_session_name, session_pod_label
from sidecred.pods.settings import Settings
from sidecred.sidecar import config as sc
from sidecred.sidecar.config import TOKEN_MODES
from sidecred.sidecar.session_name import container_session_name

FULL_URI = "AWS_CONTAINER_CREDENTIALS_FULL_URI"
RELATIVE_URI = "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"
AUTH_TOKEN_FILE = "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"
AUTH_TOKEN = "AWS_CONTAINER_AUTHORIZATION_TOKEN"
REGION_VARS = ("AWS_REGION", "AWS_DEFAULT_REGION")
SIDECAR_UID = 65532  # the distroless "nonroot" user; the image runs as it too
HEALTH_PORT_NAME = "sidecred-health"  # at most 15 characters, a Kubernetes port name limit
WAIT_READY_COMMAND = [*SIDECAR_COMMAND, "--wait-ready"]
# The sidecar's env for the containers with a role of their own, and their URIs: the
# sidecar's contract (sidecar/config.py).
ENV_CONTAINER_ROLES = sc.ENV_CONTAINER_ROLES
CONTAINER_CREDENTIALS_PREFIX = sc.CONTAINER_CREDENTIALS_PREFIX
container_credentials_uri = sc.container_credentials_uri


@dataclass(frozen=True)
class ContainerCredential:
    """A container's own role, as its sidecar serves it."""

    container: str
    role_arn: str
    session_name: str  # "<namespace>.<pod>.<container>"
    auth_token: str | None = None  # token mode env only

    def __repr__(self) -> str:  # never the auth token
        return f"ContainerCredential({self.container!r}, {self.role_arn!r})"


@dataclass(frozen=True)
class Injection:
    """Everything the patch needs for one pod."""

    role_arn: str | None  # the pod's role; None when only containers have roles
    options: PodOptions
    config: Settings
    port: int
    token_mode: str
    auth_token: str | None  # token mode env only, for the pod's role
    session_name: str | None = None  # always "<namespace>." + the annotation's value
    containers: tuple[ContainerCredential, ...] = ()  # containers with a role of their own
    no_credentials: frozenset[str] = frozenset()  # containers mapped to ""

    def credential_of(self, container: str) -> ContainerCredential | None:
        return next((c for c in self.containers if c.container == container), None)

    def gets_credentials(self, container: str) -> bool:
        """Whether a container (not skipped, not an early init container) gets credential env."""
        if container in self.no_credentials:
            return False
        return self.role_arn is not None or self.credential_of(container) is not None


def sidecar_entry_field(pod: Mapping[str, Any], key: str) -> dict[str, str]:
    """container -> `key` of its entry in the pod's present sidecar's container roles
    (`role_arn`, `auth_token`); {} when the pod has no sidecar (see `entry_field`)."""
    sidecar = find_sidecar(pod)
    return entry_field(sidecar[2], key) if sidecar is not None else {}


def entry_field(sidecar: Mapping[str, Any], key: str) -> dict[str, str]:
    """container -> `key` of its entry in a sidecar container's container roles, for each
    entry where it is a non-empty string; {} when the env is not a readable JSON object."""
    raw = env_value(sidecar, ENV_CONTAINER_ROLES)
    try:
        entries = json.loads(raw) if raw else {}
    except (ValueError, RecursionError):
        return {}
    if not isinstance(entries, dict):
        return {}
    return {
        str(name): entry[key]
        for name, entry in entries.items()
        if isinstance(entry, dict) and isinstance(entry.get(key), str) and entry[key]
    }


def existing_container_tokens(pod: Mapping[str, Any]) -> dict[str, str]:
    """container -> auth token from the pod's present sidecar (a reinvocation), if readable."""
    return sidecar_entry_field(pod, "auth_token")


def plan_injection(
    pod: Mapping[str, Any],
    role_arn: str | None,
    options: PodOptions,
    config: Settings,
    new_token: Callable[[], str],
    namespace: str,
    roles: ContainerRoles = NO_CONTAINER_ROLES,
) -> Injection:
    """Settle the port, tokens and session names.

    A pod that already runs a sidecar (a reinvocation, or a replica on another
    configuration injected it) keeps that sidecar's port, token mode and tokens, so
    containers added later are pointed at the sidecar the pod has.
    """
    existing = find_sidecar(pod)
    port, token_mode, token = config.sidecar_port, options.token_mode, None
    if existing is not None:
        port = port_of(existing[2]) or port
        mode = env_value(existing[2], sc.ENV_TOKEN_MODE)
        token_mode = mode if mode in TOKEN_MODES else token_mode
        if token_mode == "env" and role_arn is not None:
            token = env_value(existing[2], sc.ENV_AUTH_TOKEN) or None
    if token_mode == "env" and token is None and role_arn is not None:
        token = new_token()
    session = options.session_name and custom_session_name(namespace, options.session_name)
    containers = _plan_containers(pod, options, token_mode, new_token, namespace, roles)
    return Injection(
        role_arn, options, config, port, token_mode, token, session or None, containers, roles.none
    )


def port_of(sidecar: Mapping[str, Any]) -> int | None:
    """The credential port a sidecar container serves on, if its env names a valid one."""
    value = env_value(sidecar, sc.ENV_PORT) or ""
    if value.isascii() and value.isdigit() and 0 < int(value) < 65536:
        return int(value)
    return None


def _plan_containers(
    pod: Mapping[str, Any],
    options: PodOptions,
    token_mode: str,
    new_token: Callable[[], str],
    namespace: str,
    roles: ContainerRoles,
) -> tuple[ContainerCredential, ...]:
    label = options.session_name or session_pod_label(pod)
    tokens = existing_container_tokens(pod) if token_mode == "env" else {}
    planned = []
    for name, arn in roles.own:
        token = None
        if token_mode == "env":
            token = tokens.get(name) or new_token()
        planned.append(
            ContainerCredential(name, arn, container_session_name(namespace, label, name), token)
        )
    return tuple(planned)


def _field_env(name: str, field_path: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": field_path}}}


def source_env(cfg: Settings) -> list[dict[str, Any]]:
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


def container_roles_env(inj: Injection) -> dict[str, dict[str, str]]:
    """The value of SIDECRED_CONTAINER_ROLES, parsed: one entry per container with its own role."""
    entries = {}
    for cred in inj.containers:
        entry = {"role_arn": cred.role_arn, "session_name": cred.session_name}
        if inj.token_mode == "file":
            entry["token_file"] = container_token_file(cred.container)
        else:
            entry["auth_token"] = str(cred.auth_token)
        entries[cred.container] = entry
    return entries


def sidecar_env(inj: Injection) -> list[dict[str, Any]]:
    """Every setting the sidecar uses, in the pod spec for all to see: the webhook's own,
    then the operator's (proxy, endpoints, CA bundle), which tenants cannot add."""
    extra = [{"name": name, "value": value} for name, value in inj.config.sidecar_extra_env]
    return own_sidecar_env(inj) + extra


def own_sidecar_env(inj: Injection) -> list[dict[str, Any]]:
    """The settings the webhook itself writes into the sidecar's env."""
    cfg, opts = inj.config, inj.options
    native = cfg.sidecar_mode == "native"
    env: list[dict[str, Any]] = []
    if inj.role_arn is not None:
        env.append({"name": sc.ENV_ROLE_ARN, "value": inj.role_arn})
    env += [
        {"name": sc.ENV_CREDENTIAL_SOURCE, "value": cfg.credential_source},
        {"name": sc.ENV_SESSION_DURATION, "value": str(opts.session_duration)},
        {"name": sc.ENV_PORT, "value": str(inj.port)},
        {"name": sc.ENV_HEALTH_PORT, "value": str(cfg.health_port)},
        {"name": sc.ENV_TOKEN_MODE, "value": inj.token_mode},
    ]
    if inj.role_arn is not None:  # a pod with container roles only has no pod-level token
        if inj.token_mode == "file":
            env.append({"name": sc.ENV_TOKEN_FILE, "value": TOKEN_FILE})
        else:
            env.append({"name": sc.ENV_AUTH_TOKEN, "value": inj.auth_token})
    if inj.containers:
        value = json.dumps(container_roles_env(inj), separators=(",", ":"))
        env.append({"name": ENV_CONTAINER_ROLES, "value": value})
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


def uses_sa_token(cfg: Settings) -> bool:
    """Whether the sidecar gets a projected service-account token (web-identity, broker)."""
    return cfg.credential_source in ("web-identity", "broker")


def sidecar_mounts(inj: Injection) -> list[dict[str, Any]]:
    """The sidecar's mounts: each role's token directory (file mode), its projected token."""
    mounts: list[dict[str, Any]] = []
    if inj.token_mode == "file":
        if inj.role_arn is not None:
            mounts.append({"name": TOKEN_VOLUME, "mountPath": TOKEN_DIR})
        for cred in inj.containers:
            volume, path = (
                container_token_volume(cred.container),
                container_token_dir(cred.container),
            )
            mounts.append({"name": volume, "mountPath": path})
    if uses_sa_token(inj.config):
        mounts.append({"name": SA_TOKEN_VOLUME, "mountPath": SA_TOKEN_DIR, "readOnly": True})
    return mounts


def build_sidecar(inj: Injection) -> dict[str, Any]:
    """The `sidecred` container spec; its env shows every setting the sidecar uses."""
    cfg = inj.config
    native = cfg.sidecar_mode == "native"
    env = sidecar_env(inj)
    mounts = sidecar_mounts(inj)
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
        names = [container_token_volume(c.container) for c in inj.containers]
        if inj.role_arn is not None:
            names.insert(0, TOKEN_VOLUME)
        volumes += [
            {"name": n, "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}} for n in names
        ]
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


def app_env(inj: Injection, container: str) -> list[dict[str, str]]:
    """The credential env one application container gets (before skipping what it sets).

    Its own role's URI and token when it has one, else the pod role's; nothing for a
    container mapped to "" or when the pod has no role for it.
    """
    cred = inj.credential_of(container)
    if cred is not None:
        uri = container_credentials_uri(inj.port, container)
        token_file, token = container_token_file(container), cred.auth_token
    elif inj.role_arn is not None and container not in inj.no_credentials:
        uri, token_file, token = sc.credentials_uri(inj.port), TOKEN_FILE, inj.auth_token
    else:
        return []
    env = [{"name": FULL_URI, "value": uri}]
    if inj.token_mode == "file":
        env.append({"name": AUTH_TOKEN_FILE, "value": token_file})
    else:
        env.append({"name": AUTH_TOKEN, "value": str(token)})
    return env


def token_mount(inj: Injection, container: str) -> dict[str, Any] | None:
    """The read-only mount of the token a container is given (file mode), or None."""
    if inj.token_mode != "file" or not inj.gets_credentials(container):
        return None
    if inj.credential_of(container) is not None:
        volume, path = container_token_volume(container), container_token_dir(container)
    else:
        volume, path = TOKEN_VOLUME, TOKEN_DIR
    return {"name": volume, "mountPath": path, "readOnly": True}


def expected_uri(inj: Injection, container: str) -> str | None:
    """The credential URI a container may point its SDK at (None: it gets no credentials)."""
    if inj.credential_of(container) is not None:
        return container_credentials_uri(inj.port, container)
    return sc.credentials_uri(inj.port) if inj.gets_credentials(container) else None
