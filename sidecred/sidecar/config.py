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
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from sidecred.int_range import int_in_range_or_problem

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
LOOPBACK_HOST = "127.0.0.1"


class ConfigError(ValueError):
    """A missing or invalid setting. The message names the variable and the fix."""


@dataclass(frozen=True)
class SidecarConfig:
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
    token_file: str | None = None
    auth_token: str | None = None
    web_identity_token_file: str | None = None
    external_id: str | None = None
    session_name: str | None = None
    region: str | None = None
    drain_seconds: float = 0.0
    retry_cap_seconds: float = DEFAULT_RETRY_CAP_SECONDS
    broker_url: str | None = None
    broker_ca: str | None = None  # PEM text
    broker_token_file: str | None = None


def credentials_uri(port: int) -> str:
    """The AWS_CONTAINER_CREDENTIALS_FULL_URI value for a sidecar on `port`.

    The literal 127.0.0.1 is used because old SDKs accept only it and localhost.
    """
    return f"http://{LOOPBACK_HOST}:{port}{CREDENTIALS_PATH}"


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


def load_config(env: Mapping[str, str] | None = None) -> SidecarConfig:
    """Read and validate the sidecar's settings; raise ConfigError listing every problem."""
    env = os.environ if env is None else env
    problems: list[str] = []

    role_arn = _required(env, ENV_ROLE_ARN, problems)
    if role_arn and not role_arn.startswith("arn:"):
        problems.append(f"{ENV_ROLE_ARN}={role_arn!r} is not an ARN")
    source = _choice(env, ENV_CREDENTIAL_SOURCE, CREDENTIAL_SOURCES, problems)
    token_mode = _choice(env, ENV_TOKEN_MODE, TOKEN_MODES, problems)
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

    token_file, auth_token = _token_settings(env, token_mode, problems)

    web_identity_token_file = env.get(ENV_WEB_IDENTITY_TOKEN_FILE) or None
    if source == "web-identity" and not web_identity_token_file:
        problems.append(
            f"{ENV_WEB_IDENTITY_TOKEN_FILE} is not set (required for source web-identity)"
        )

    broker = _broker_settings(env, problems) if source == "broker" else {}

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
        **broker,
    )
