"""The webhook's options: one frozen dataclass, its CLI flags and their SIDECRED_* env fallbacks.

Every option is a flag (`--base-role-arn`) that falls back to an env variable
(`SIDECRED_BASE_ROLE_ARN`) when the flag is absent, so the Helm chart can pass
either. `config_from_args` validates everything at start-up and raises
ValueError naming each bad option, so a misconfigured webhook never starts.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields

from sidecred.sidecar.config import (
    CREDENTIAL_SOURCES,
    MAX_SESSION_DURATION,
    MIN_SESSION_DURATION,
    SIDECAR_MODES,
    TOKEN_MODES,
)

NAMESPACE_POLICIES = ("require", "off")

# arn:<partition>:iam::<account>:role/<optional path/> -- the prefix bare role names are appended to.
BASE_ROLE_ARN_RE = re.compile(
    r"arn:[a-z][a-z0-9-]{0,31}:iam::[0-9]{12}:role/(?:[A-Za-z0-9_+=,.@-]+/)*"
)
# A Kubernetes qualified annotation key: optional DNS prefix, then a name.
ANNOTATION_KEY_RE = re.compile(
    r"(?:[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?/)?[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?"
)
# Kubernetes resource quantities such as 10m, 64Mi, 0.5.
QUANTITY_RE = re.compile(r"[0-9]+(?:\.[0-9]+)?(?:m|k|M|G|Ki|Mi|Gi)?")


@dataclass(frozen=True)
class WebhookConfig:
    """Every webhook option from DESIGN.md section 2, with the defaults the chart uses."""

    base_role_arn: str | None = None
    annotation_key: str = "iam.amazonaws.com/role"
    namespace_policy: str = "require"  # require | off
    credential_source: str = "web-identity"  # web-identity | assume-role
    sidecar_image: str = (
        "ghcr.io/sidecred/sidecred-sidecar:0.1.0"  # the slim image (Dockerfile target sidecar)
    )
    sidecar_mode: str = "native"  # native | container
    token_mode: str = "file"  # file | env
    region: str | None = None
    session_duration: int = 3600
    token_audience: str = "sts.amazonaws.com"
    sidecar_port: int = 61080  # credential endpoint on 127.0.0.1
    health_port: int = 61081  # /healthz and /readyz for the kubelet's probes
    # Container mode only: how long the sidecar keeps serving after SIGTERM so
    # apps can still fetch credentials while they shut down.
    drain_seconds: int = 20
    # Lifetime the kubelet requests for the projected service-account token; it
    # rotates the file at 80% of this, and the sidecar re-reads it on every call.
    token_expiration: int = 86400
    sidecar_cpu_request: str = "10m"
    sidecar_memory_request: str = "64Mi"
    sidecar_cpu_limit: str = (
        "500m"  # start-up imports botocore; a tight limit slows every pod start
    )
    sidecar_memory_limit: str = "128Mi"


# option name -> (help, choices or None)
_HELP: dict[str, tuple[str, tuple[str, ...] | None]] = {
    "base_role_arn": ("ARN prefix for bare role names, e.g. arn:aws:iam::111122223333:role/", None),
    "annotation_key": ("pod annotation holding the role", None),
    "namespace_policy": ("require a namespace allow-list, or turn policy off", NAMESPACE_POLICIES),
    "credential_source": ("how the sidecar gets credentials from STS", CREDENTIAL_SOURCES),
    "sidecar_image": ("image of the injected sidecar", None),
    "sidecar_mode": ("native sidecar init container, or a regular container", SIDECAR_MODES),
    "token_mode": ("how apps get the endpoint's auth token", TOKEN_MODES),
    "region": ("AWS region for STS and the apps' AWS_REGION", None),
    "session_duration": (
        f"session seconds ({MIN_SESSION_DURATION}-{MAX_SESSION_DURATION})",
        None,
    ),
    "token_audience": ("audience of the projected service-account token", None),
    "sidecar_port": ("credential endpoint port on 127.0.0.1", None),
    "health_port": ("sidecar health port (probes)", None),
    "drain_seconds": ("container mode: seconds the sidecar serves after SIGTERM", None),
    "token_expiration": ("expirationSeconds of the projected service-account token", None),
    "sidecar_cpu_request": ("sidecar CPU request", None),
    "sidecar_memory_request": ("sidecar memory request", None),
    "sidecar_cpu_limit": ("sidecar CPU limit", None),
    "sidecar_memory_limit": ("sidecar memory limit", None),
}


def env_name(option: str) -> str:
    """The env variable read for an option when its flag is absent."""
    return "SIDECRED_" + option.upper()


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one flag per WebhookConfig field (--base-role-arn, ...).

    Defaults are None so config_from_args can tell "flag absent" (use the
    SIDECRED_* env, then the dataclass default) from "flag given".
    """
    group = parser.add_argument_group("webhook options (each also read from SIDECRED_<NAME> env)")
    for field in fields(WebhookConfig):
        help_, choices = _HELP[field.name]
        group.add_argument(
            "--" + field.name.replace("_", "-"),
            dest=field.name,
            default=None,
            choices=choices,
            metavar=None if choices else "VALUE",
            help=f"{help_} [env {env_name(field.name)}]",
        )


def _int(name: str, raw: str, low: int, high: int, problems: list[str]) -> int:
    try:
        value = int(raw)
    except ValueError:
        problems.append(f"--{name.replace('_', '-')}={raw!r} is not a whole number")
        return 0
    if not low <= value <= high:
        problems.append(f"--{name.replace('_', '-')}={value} is outside {low}-{high}")
    return value


def config_from_args(
    args: argparse.Namespace, env: Mapping[str, str] | None = None
) -> WebhookConfig:
    """Build a validated WebhookConfig from parsed flags, falling back to env then defaults.

    Raises ValueError listing every invalid option, so the webhook refuses to start.
    """
    env = os.environ if env is None else env
    defaults = WebhookConfig()
    raw: dict[str, str | None] = {}
    for field in fields(WebhookConfig):
        value = getattr(args, field.name, None)
        if value is None:
            value = env.get(env_name(field.name)) or None
        raw[field.name] = value

    problems: list[str] = []
    values: dict[str, object] = {}
    for field in fields(WebhookConfig):
        value = raw[field.name]
        flag = "--" + field.name.replace("_", "-")
        if value is None:
            values[field.name] = getattr(defaults, field.name)
            continue
        value = value.strip()
        _, choices = _HELP[field.name]
        if choices and value not in choices:
            problems.append(f"{flag}={value!r} is not one of {', '.join(choices)}")
        if isinstance(getattr(defaults, field.name), int):
            limits = {
                "session_duration": (MIN_SESSION_DURATION, MAX_SESSION_DURATION),
                "sidecar_port": (1, 65535),
                "health_port": (1, 65535),
                "drain_seconds": (0, 3600),
                "token_expiration": (600, 2**31 - 1),  # the API server's minimum is 600 s
            }[field.name]
            values[field.name] = _int(field.name, value, *limits, problems)
        else:
            values[field.name] = value

    base = values["base_role_arn"]
    if isinstance(base, str):
        if not base.endswith("/"):
            base += "/"
        if not BASE_ROLE_ARN_RE.fullmatch(base):
            problems.append(
                f"--base-role-arn={values['base_role_arn']!r} is not an IAM role ARN prefix "
                "such as arn:aws:iam::111122223333:role/"
            )
        values["base_role_arn"] = base
    if not ANNOTATION_KEY_RE.fullmatch(str(values["annotation_key"])):
        problems.append(f"--annotation-key={values['annotation_key']!r} is not an annotation key")
    for name in ("sidecar_image", "token_audience", "region"):
        value = values[name]
        if isinstance(value, str) and (not value or any(c.isspace() for c in value)):
            problems.append(
                f"--{name.replace('_', '-')}={value!r} must be non-empty without spaces"
            )
    for name in (
        "sidecar_cpu_request",
        "sidecar_memory_request",
        "sidecar_cpu_limit",
        "sidecar_memory_limit",
    ):
        if not QUANTITY_RE.fullmatch(str(values[name])):
            problems.append(f"--{name.replace('_', '-')}={values[name]!r} is not a quantity")
    if values["sidecar_port"] == values["health_port"]:
        problems.append(
            f"--sidecar-port and --health-port are both {values['sidecar_port']}; they must differ"
        )
    if problems:
        raise ValueError("sidecred webhook: invalid options: " + "; ".join(problems))
    return WebhookConfig(**values)  # type: ignore[arg-type]
