"""The sidecar's configuration contract: the env names the webhook writes.

These names are defined here once. The webhook imports them to build the
sidecar's container spec, so the pod spec shows every setting the sidecar
uses and the sidecar has no hidden defaults of its own. Each value here is this
sidecar's own setting, resolved by the webhook for this pod; the same name in the
webhook's env (for example `SIDECRED_TOKEN_MODE`) is the webhook's default for the
pods it injects, not a setting any sidecar reads.
"""

from __future__ import annotations

import os

from sidecred.int_range import int_in_range_or_problem
from sidecred.json_setting import json_setting
from sidecred.sidecar.session_name import container_session_name

TYPE_CHECKING = False  # `typing` is not imported: the serving process would pay ~2 MB for it
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any, ClassVar, Self

# --- env names (the contract) ------------------------------------------------
ENV_ROLE_ARN = "SIDECRED_ROLE_ARN"
ENV_CREDENTIAL_SOURCE = "SIDECRED_CREDENTIAL_SOURCE"  # web-identity | broker | assume-role
ENV_SESSION_DURATION = "SIDECRED_SESSION_DURATION"  # seconds
ENV_EXTERNAL_ID = "SIDECRED_EXTERNAL_ID"  # optional, assume-role only
ENV_SESSION_NAME = "SIDECRED_SESSION_NAME"  # optional override of <ns>.<pod>
ENV_REGION = "SIDECRED_REGION"  # optional; selects the regional STS endpoint
ENV_PORT = "SIDECRED_PORT"  # credential endpoint, bound to 127.0.0.1
ENV_HEALTH_PORT = "SIDECRED_HEALTH_PORT"  # /healthz and /readyz, for the kubelet
ENV_TOKEN_MODE = "SIDECRED_TOKEN_MODE"  # file | env
ENV_TOKEN_FILE = "SIDECRED_TOKEN_FILE"  # token mode file: where the sidecar writes it
ENV_AUTH_TOKEN = "SIDECRED_AUTH_TOKEN"  # token mode env: the value the webhook generated
ENV_WEB_IDENTITY_TOKEN_FILE = "SIDECRED_WEB_IDENTITY_TOKEN_FILE"  # web-identity only
ENV_SIDECAR_MODE = "SIDECRED_SIDECAR_MODE"  # native | container
ENV_DRAIN_SECONDS = "SIDECRED_DRAIN_SECONDS"  # container mode: serve this long after SIGTERM
ENV_POD_NAME = "SIDECRED_POD_NAME"  # downward API: metadata.name
ENV_POD_NAMESPACE = "SIDECRED_POD_NAMESPACE"  # downward API: metadata.namespace
ENV_POD_UID = "SIDECRED_POD_UID"  # downward API: metadata.uid
ENV_SERVICE_ACCOUNT = "SIDECRED_SERVICE_ACCOUNT"  # downward API: spec.serviceAccountName
ENV_RETRY_CAP_SECONDS = "SIDECRED_RETRY_CAP_SECONDS"  # optional: longest wait between STS retries
ENV_BROKER_URL = "SIDECRED_BROKER_URL"  # broker only: https://... of `sidecred broker`
ENV_BROKER_CA = "SIDECRED_BROKER_CA"  # broker only: the CA bundle (PEM text, public) to verify it
ENV_BROKER_TOKEN_FILE = (
    "SIDECRED_BROKER_TOKEN_FILE"  # broker only: projected token, broker audience
)
# Optional: the containers with a role of their own, as a JSON object keyed by container name:
# {"<c>": {"role_arn": ..., "session_name": ..., "token_file": ... | "auth_token": ...}}
ENV_CONTAINER_ROLES = "SIDECRED_CONTAINER_ROLES"
CONTAINER_ROLES_EXAMPLE = 'an object from container name to {"role_arn", "session_name", its token}'

# The credential sources, for the sidecar and the webhook alike. assume-role takes base
# credentials from the pod's surroundings (the node's instance metadata): unsafe for
# multi-tenant clusters, and gated by the webhook.
CREDENTIAL_SOURCES = ("web-identity", "broker", "assume-role")
TOKEN_MODES = ("file", "env")
SIDECAR_MODES = ("native", "container")

# STS limits: 900 s is the API minimum, 43200 s the maximum a role may allow.
# sidecred refuses anything under 3600 s at admission (SDKs refresh below 15 min).
MIN_SESSION_DURATION = 3600
MAX_SESSION_DURATION = 43200
STS_MIN_SESSION_DURATION = 900  # what the sidecar accepts in its own env

# Failed STS calls are retried with jittered exponential backoff up to this cap.
DEFAULT_RETRY_CAP_SECONDS = 60.0

# The path the credential endpoint serves; the webhook builds the full URI from it.
CREDENTIALS_PATH = "/v1/credentials"
# A container's own role: /v1/containers/<container>/credentials.
CONTAINER_CREDENTIALS_PREFIX = "/v1/containers/"
LOOPBACK_HOST = "127.0.0.1"
MAX_CONTAINER_ROLES = 64
# What each container-role entry may hold: required fields, and the one the token mode adds.
_ENTRY_FIELDS = ("role_arn", "session_name")
_ENTRY_TOKEN_FIELD = {"file": "token_file", "env": "auth_token"}


class ConfigError(ValueError):
    """A missing or invalid setting. The message names the variable and the fix."""


class _Fields:
    """Read-only attributes set by keyword from a table, `_FIELDS`: name -> default, None
    marking a required keyword; "" stands for "not set" there, and the attribute is None
    then (a plain class: `dataclasses` costs every pod ~2 MB)."""

    __slots__ = ()
    _FIELDS: ClassVar[Mapping[str, object]]

    def __init__(self, **values: Any) -> None:
        for name, default in self._FIELDS.items():
            if name in values:
                value = values.pop(name)
            elif default is None:
                raise TypeError(f"{type(self).__name__} needs {name}")
            else:
                value = default
            object.__setattr__(self, name, None if value == "" == default else value)
        if values:
            raise TypeError(f"{type(self).__name__} has no {', '.join(values)}")

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only")

    def replace(self, **changes: Any) -> Self:
        values = {name: getattr(self, name) for name in self._FIELDS}
        values.update(changes)
        return type(self)(**values)


_ROLE_FIELDS: dict[str, object] = {
    "container": None,
    "role_arn": None,
    "session_name": None,
    "token_file": "",  # token mode file: where the sidecar writes the container's token
    "auth_token": "",  # token mode env: the token the webhook gave the container
}


class ContainerRole(_Fields):
    """A container's own role: its ARN, session name and endpoint token (file or value)."""

    __slots__ = tuple(_ROLE_FIELDS)
    _FIELDS = _ROLE_FIELDS

    def __repr__(self) -> str:  # never the auth token
        return f"ContainerRole({self.container!r}, {self.role_arn!r})"

    if TYPE_CHECKING:
        container: str
        role_arn: str
        session_name: str
        token_file: str | None
        auth_token: str | None


# SidecarConfig's fields: name -> default; None marks a required keyword.
_CONFIG_FIELDS: dict[str, object] = {
    "role_arn": None,  # "" when the pod has no pod-level role (container roles only)
    "credential_source": None,
    "session_duration": None,
    "port": None,
    "health_port": None,
    "token_mode": None,
    "sidecar_mode": None,
    "pod_name": None,
    "pod_namespace": None,
    "pod_uid": None,
    "service_account": None,
    "token_file": "",
    "auth_token": "",
    "web_identity_token_file": "",
    "external_id": "",
    "session_name": "",
    "region": "",
    "drain_seconds": 0.0,
    "retry_cap_seconds": DEFAULT_RETRY_CAP_SECONDS,
    "broker_url": "",
    "broker_ca": "",  # PEM text
    "broker_token_file": "",
    "container_roles": (),
}


class SidecarConfig(_Fields):
    """Every setting of one sidecar."""

    __slots__ = tuple(_CONFIG_FIELDS)
    _FIELDS = _CONFIG_FIELDS

    def container_role(self, container: str) -> ContainerRole | None:
        for role in self.container_roles:
            if role.container == container:
                return role
        return None

    def session_name_of(self, role: ContainerRole) -> str:
        """The session name of a container's own role: `<namespace>.<pod>.<container>` with
        this pod's name (downward API), as the broker names it, since the webhook may have
        seen only the pod's generateName; with a custom session name (SIDECRED_SESSION_NAME),
        the webhook's `<namespace>.<value>.<container>` from the role's entry."""
        if self.session_name:
            return role.session_name
        return container_session_name(self.pod_namespace, self.pod_name, role.container)

    if TYPE_CHECKING:
        role_arn: str
        credential_source: str
        session_duration: int
        port: int
        health_port: int
        token_mode: str
        sidecar_mode: str
        pod_name: str
        pod_namespace: str
        pod_uid: str
        service_account: str
        token_file: str | None
        auth_token: str | None
        web_identity_token_file: str | None
        external_id: str | None
        session_name: str | None
        region: str | None
        drain_seconds: float
        retry_cap_seconds: float
        broker_url: str | None
        broker_ca: str | None
        broker_token_file: str | None
        container_roles: tuple[ContainerRole, ...]


def credentials_uri(port: int) -> str:
    """The AWS_CONTAINER_CREDENTIALS_FULL_URI value for a sidecar on `port`.

    The literal 127.0.0.1 is used because old SDKs accept only it and localhost.
    """
    return f"http://{LOOPBACK_HOST}:{port}{CREDENTIALS_PATH}"


def container_credentials_path(container: str) -> str:
    """The path of `container`'s own role on the credential endpoint."""
    return f"{CONTAINER_CREDENTIALS_PREFIX}{container}/credentials"


def container_credentials_uri(port: int, container: str) -> str:
    """The AWS_CONTAINER_CREDENTIALS_FULL_URI value for `container`'s own role."""
    return f"http://{LOOPBACK_HOST}:{port}{container_credentials_path(container)}"


def is_dns_label(name: str) -> bool:
    """A DNS-1123 label, which is what a container name is."""
    if not 0 < len(name) <= 63 or not name.isascii():
        return False
    if not (name[0].isalnum() and name[-1].isalnum()) or name != name.lower():
        return False
    return all(c.isalnum() or c == "-" for c in name)


def _session_name_ok(name: str) -> bool:
    # STS's RoleSessionName: [\w+=,.@-]{2,64}, ASCII.
    return (
        2 <= len(name) <= 64 and name.isascii() and all(c.isalnum() or c in "_+=,.@-" for c in name)
    )


def _container_entry(
    container: str, entry: object, token_mode: str, problems: list[str]
) -> ContainerRole | None:
    where = f"{ENV_CONTAINER_ROLES}[{container!r}]"
    if not is_dns_label(container):
        problems.append(f"{ENV_CONTAINER_ROLES}: {container[:70]!r} is not a container name")
        return None
    if not isinstance(entry, dict):
        problems.append(f"{where} is not an object")
        return None
    token_field = _ENTRY_TOKEN_FIELD.get(token_mode, "token_file")
    allowed = (*_ENTRY_FIELDS, token_field)
    unknown = sorted(set(entry) - set(allowed))
    if unknown:
        problems.append(
            f"{where} has unknown field(s) {', '.join(map(repr, unknown))} (token mode {token_mode}: {', '.join(allowed)})"
        )
        return None
    values = {}
    for name in allowed:
        value = entry.get(name)
        if not isinstance(value, str) or not value.strip():
            problems.append(f"{where}.{name} is not a non-empty string")
            return None
        values[name] = value.strip()
    if not values["role_arn"].startswith("arn:"):
        problems.append(f"{where}.role_arn={values['role_arn']!r} is not an ARN")
        return None
    if not _session_name_ok(values["session_name"]):
        problems.append(
            f"{where}.session_name={values['session_name']!r} is not a valid STS session name"
        )
        return None
    return ContainerRole(container=container, **values)


def parse_container_roles(
    raw: str, token_mode: str, problems: list[str]
) -> tuple[ContainerRole, ...]:
    """SIDECRED_CONTAINER_ROLES, validated strictly; each problem appended to `problems`."""
    if not raw.strip():
        return ()
    data = json_setting(ENV_CONTAINER_ROLES, raw, dict, CONTAINER_ROLES_EXAMPLE, problems)
    if data is None:
        return ()
    if len(data) > MAX_CONTAINER_ROLES:
        problems.append(
            f"{ENV_CONTAINER_ROLES} has {len(data)} entries; at most {MAX_CONTAINER_ROLES}"
        )
        return ()
    roles = [_container_entry(name, entry, token_mode, problems) for name, entry in data.items()]
    return tuple(role for role in roles if role is not None)


def _required(env: Mapping[str, str], name: str, problems: list[str]) -> str:
    value = env.get(name, "").strip()
    if not value:
        problems.append(f"{name} is not set")
    return value


def _choice(
    env: Mapping[str, str], name: str, choices: tuple[str, ...], problems: list[str]
) -> str:
    value = _required(env, name, problems)
    if value and value not in choices:
        problems.append(f"{name}={value!r} is not one of {', '.join(choices)}")
    return value


def _int_setting(
    env: Mapping[str, str], name: str, low: int, high: int, problems: list[str], unit: str = ""
) -> int:
    """A required whole number in [low, high]; 0 (and a problem) when missing or invalid."""
    raw = _required(env, name, problems)
    return int_in_range_or_problem(name, raw, low, high, problems, unit=unit) if raw else 0


def _token_settings(
    env: Mapping[str, str], token_mode: str, problems: list[str]
) -> tuple[str | None, str | None]:
    """(token file, auth token): the one the token mode needs must be set."""
    token_file = env.get(ENV_TOKEN_FILE) or None
    auth_token = env.get(ENV_AUTH_TOKEN) or None
    if token_mode == "file" and not token_file:
        problems.append(f"{ENV_TOKEN_FILE} is not set (required in token mode file)")
    if token_mode == "env" and not auth_token:
        problems.append(f"{ENV_AUTH_TOKEN} is not set (required in token mode env)")
    return token_file, auth_token


def _seconds(
    env: Mapping[str, str],
    name: str,
    default: float,
    valid: Callable[[float], bool],
    expected: str,
    problems: list[str],
) -> float:
    """An optional number of seconds; `valid` also rejects nan (every comparison is False)."""
    raw = env.get(name, "") or str(default)
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not valid(value):
        problems.append(f"{name}={raw!r} is not {expected}")
        return default
    return value


def _broker_settings(env: Mapping[str, str], problems: list[str]) -> dict[str, str]:
    """The broker source's three settings, each required."""
    url = _required(env, ENV_BROKER_URL, problems)
    if url and not url.startswith("https://"):
        problems.append(f"{ENV_BROKER_URL}={url!r} is not an https:// URL")
    ca = _required(env, ENV_BROKER_CA, problems)
    if ca and "-----BEGIN CERTIFICATE-----" not in ca:
        problems.append(f"{ENV_BROKER_CA} holds no PEM certificate")
    token_file = _required(env, ENV_BROKER_TOKEN_FILE, problems)
    return {"broker_url": url, "broker_ca": ca, "broker_token_file": token_file}


def _timing_settings(env: Mapping[str, str], problems: list[str]) -> tuple[float, float]:
    """(drain seconds, retry cap seconds), each optional."""
    drain = _seconds(
        env,
        ENV_DRAIN_SECONDS,
        0.0,
        lambda v: 0 <= v < float("inf"),
        "a non-negative number",
        problems,
    )
    retry_cap = _seconds(
        env,
        ENV_RETRY_CAP_SECONDS,
        DEFAULT_RETRY_CAP_SECONDS,
        lambda v: 0 < v <= 3600,
        "a number of seconds in (0, 3600]",
        problems,
    )
    return drain, retry_cap


def load_config(env: Mapping[str, str] | None = None) -> SidecarConfig:
    """Read and validate the sidecar's settings; raise ConfigError listing every problem."""
    env = os.environ if env is None else env
    problems: list[str] = []

    source = _choice(env, ENV_CREDENTIAL_SOURCE, CREDENTIAL_SOURCES, problems)
    token_mode = _choice(env, ENV_TOKEN_MODE, TOKEN_MODES, problems)
    containers = parse_container_roles(env.get(ENV_CONTAINER_ROLES, ""), token_mode, problems)
    role_arn = env.get(ENV_ROLE_ARN, "").strip()
    if not role_arn and not env.get(ENV_CONTAINER_ROLES, "").strip():
        problems.append(f"{ENV_ROLE_ARN} is not set (nor {ENV_CONTAINER_ROLES})")
    if role_arn and not role_arn.startswith("arn:"):
        problems.append(f"{ENV_ROLE_ARN}={role_arn!r} is not an ARN")
    sidecar_mode = _choice(env, ENV_SIDECAR_MODE, SIDECAR_MODES, problems)
    port = _int_setting(env, ENV_PORT, 1, 65535, problems)
    health_port = _int_setting(env, ENV_HEALTH_PORT, 1, 65535, problems)
    if port and port == health_port:
        problems.append(f"{ENV_PORT} and {ENV_HEALTH_PORT} are both {port}; they must differ")

    low, high = STS_MIN_SESSION_DURATION, MAX_SESSION_DURATION
    duration = _int_setting(env, ENV_SESSION_DURATION, low, high, problems, "seconds")

    pod_name = _required(env, ENV_POD_NAME, problems)
    pod_namespace = _required(env, ENV_POD_NAMESPACE, problems)
    pod_uid = _required(env, ENV_POD_UID, problems)
    service_account = _required(env, ENV_SERVICE_ACCOUNT, problems)

    # The pod role's token; a pod with container roles only has none.
    token_file, auth_token = (
        _token_settings(env, token_mode, problems) if role_arn or not containers else (None, None)
    )
    _check_distinct_token_files(token_file, containers, problems)

    web_identity_token_file = env.get(ENV_WEB_IDENTITY_TOKEN_FILE) or None
    if source == "web-identity" and not web_identity_token_file:
        problems.append(
            f"{ENV_WEB_IDENTITY_TOKEN_FILE} is not set (required for source web-identity)"
        )

    broker = _broker_settings(env, problems) if source == "broker" else {}

    drain, retry_cap = _timing_settings(env, problems)

    if problems:
        raise ConfigError("sidecred sidecar: invalid configuration: " + "; ".join(problems))

    return SidecarConfig(
        role_arn=role_arn,
        credential_source=source,
        session_duration=duration,
        port=port,
        health_port=health_port,
        token_mode=token_mode,
        sidecar_mode=sidecar_mode,
        pod_name=pod_name,
        pod_namespace=pod_namespace,
        pod_uid=pod_uid,
        service_account=service_account,
        token_file=token_file,
        auth_token=auth_token,
        web_identity_token_file=web_identity_token_file,
        external_id=env.get(ENV_EXTERNAL_ID) or None,
        session_name=env.get(ENV_SESSION_NAME) or None,
        region=env.get(ENV_REGION) or None,
        drain_seconds=drain,
        retry_cap_seconds=retry_cap,
        container_roles=containers,
        **broker,
    )


def _check_distinct_token_files(
    pod_file: str | None, containers: tuple[ContainerRole, ...], problems: list[str]
) -> None:
    """Each role's token goes to its own file: a shared one would hand a role's token to another."""
    seen = {os.path.normpath(pod_file): "the pod's role"} if pod_file else {}
    for role in containers:
        if role.token_file is None:
            continue
        path = os.path.normpath(role.token_file)
        if path in seen:
            problems.append(
                f"{ENV_CONTAINER_ROLES}[{role.container!r}].token_file is also {seen[path]}'s"
            )
        seen[path] = f"container {role.container!r}"
