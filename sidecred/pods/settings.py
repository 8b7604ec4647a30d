"""The webhook's options: one frozen dataclass, its CLI flags and their SIDECRED_* env fallbacks.

Every option is a flag (`--base-role-arn`) that falls back to an env variable
(`SIDECRED_BASE_ROLE_ARN`) when the flag is absent, so the Helm chart can pass
either. Each option's facts (help, choices, integer range) live once, in its
dataclass field's metadata. `config_from_args` validates everything at start-up
and raises ValueError naming each bad option, so a misconfigured webhook never
starts.

Some env names are also sidecar env names (`SIDECRED_TOKEN_MODE`, `SIDECRED_REGION`,
`SIDECRED_SIDECAR_MODE`, ...; `sidecred.sidecar.config`). They never meet: in the
webhook's env the value is the default for the pods it injects (a pod annotation
such as `sidecred.dev/token-mode` may override it per pod); the webhook writes each
pod's resolved value into that pod's sidecar container, whose env is the sidecar's
own setting.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

from cryptography import x509

from sidecred.int_range import int_in_range_or_problem
from sidecred.json_setting import json_setting
from sidecred.pods.annotations import ROLE_KEY
from sidecred.pods.dns_names import is_dns1123_subdomain
from sidecred.pods.images import image_repository
from sidecred.sidecar import config as sc
from sidecred.sidecar.config import (
    CREDENTIAL_SOURCES,
    MAX_SESSION_DURATION,
    MIN_SESSION_DURATION,
    SIDECAR_MODES,
    TOKEN_MODES,
)

NAMESPACE_POLICIES = ("require", "off")
# assume-role (in CREDENTIAL_SOURCES) is accepted only with UNSAFE_ASSUME_ROLE_FLAG
# (SECURITY.md, "Base credentials").
UNSAFE_ASSUME_ROLE_FLAG = "--allow-unsafe-assume-role-node-credentials"
TRUE_WORDS, FALSE_WORDS = ("true", "1", "yes"), ("false", "0", "no", "")

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
PORTS = (1, 65535)
# An env variable name as the API server accepts it (a C identifier, also with . and -).
ENV_NAME_RE = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")
# The sidecar's settings the webhook writes itself; configuration cannot add them again.
# (SIDECRED_RETRY_CAP_SECONDS is the one sidecar setting left to operators.)
WEBHOOK_ENV_NAMES = frozenset(getattr(sc, name) for name in dir(sc) if name.startswith("ENV_")) - {
    sc.ENV_RETRY_CAP_SECONDS
}
ENV_EXAMPLE = '[{"name": "HTTPS_PROXY", "value": "http://proxy.corp:3128"}]'


def option(
    default: Any,
    help: str,
    *,
    choices: tuple[str, ...] | None = None,
    limits: tuple[int, int] | None = None,
    cli: bool = True,
    parse: Any = None,
) -> Any:
    """A Settings field carrying its flag's help, choices, integer range or parser.

    `parse(flag, text, problems)` turns the flag's text into the value, appending
    to `problems` what is wrong with it.
    """
    meta = {"help": help, "choices": choices, "limits": limits, "cli": cli, "parse": parse}
    return field(default=default, metadata=meta)


def parse_env_list(flag: str, text: str, problems: list[str]) -> tuple[tuple[str, str], ...]:
    """(name, value) pairs from a JSON list of {"name", "value"} objects (EnvVar, literal only)."""
    items = json_setting(flag, text or "[]", list, f"a list such as {ENV_EXAMPLE}", problems)
    if items is None:
        return ()
    pairs: list[tuple[str, str]] = []
    for item in items:
        name = item.get("name") if isinstance(item, dict) else None
        if not isinstance(name, str):
            problems.append(f"{flag}: {json.dumps(item)[:80]} is not an object with a name")
            continue
        if "valueFrom" in item:
            problems.append(
                f"{flag}: {name} uses valueFrom; only literal values are accepted, because a "
                "ConfigMap or Secret reference is read in each pod's own namespace, which its "
                "tenant controls"
            )
        elif set(item) - {"name", "value"}:
            problems.append(f"{flag}: {name} has keys other than name and value")
        value = item.get("value", "")
        if not isinstance(value, str):
            problems.append(f"{flag}: the value of {name} is not a string (quote it)")
        if not ENV_NAME_RE.fullmatch(name):
            problems.append(f"{flag}: {name!r} is not an env variable name")
        elif name in WEBHOOK_ENV_NAMES:
            problems.append(f"{flag}: {name} is a setting the webhook writes itself")
        pairs.append((name, str(value)))
    return tuple(pairs)


@dataclass(frozen=True)
class Settings:
    """The deployment's settings, shared by the webhook, the broker and the tools: which
    pods get a role and the sidecar to build for them (every option, with the chart's defaults)."""

    base_role_arn: str | None = option(
        None, "ARN prefix for bare role names, e.g. arn:aws:iam::111122223333:role/"
    )
    annotation_key: str = option(ROLE_KEY, "pod annotation holding the role")
    namespace_policy: str = option(
        "require",
        "require a namespace allow-list, or turn policy off",
        choices=NAMESPACE_POLICIES,
    )
    # Any pod can reach the webhook and ask about any namespace, so by default a
    # denial names the annotation to read, not its value.
    explain_denials: bool = option(
        False,
        "put the namespace policy's value in denials; only where a NetworkPolicy lets "
        "nothing but the API server reach the webhook",
    )
    credential_source: str = option(
        "web-identity",
        "where the sidecar gets credentials: STS with its web identity token, or the broker",
        choices=CREDENTIAL_SOURCES,
    )
    allow_unsafe_assume_role_node_credentials: bool = option(
        False,
        "allow --credential-source assume-role, whose base credentials are the node's "
        "instance metadata, reachable by every container: unsafe for multi-tenant clusters",
    )
    # The slim image (Dockerfile target sidecar).
    sidecar_image: str = option(
        "ghcr.io/sidecred/sidecred-sidecar:0.1.0",
        "image of the injected sidecar (with --credential-source assume-role the default is "
        "its -assume-role tag, which adds botocore)",
    )
    # Mirrors: an image-rewrite policy, a pull-through cache, or the repository the
    # sidecar came from before a move. The repository is what is trusted, not the tag.
    sidecar_repositories: tuple[str, ...] = option(
        (),
        "comma-separated image repositories the sidecar may also come from (mirrors), "
        "in any tag or digest, besides --sidecar-image's",
    )
    # Proxy, FIPS or STS endpoints, a CA bundle: env that decides where the sidecar sends
    # its token, so only configuration gives it (values are visible in every pod spec).
    sidecar_extra_env: tuple[tuple[str, str], ...] = option(
        (),
        f"env added to every sidecar, a JSON list such as {ENV_EXAMPLE}",
        parse=parse_env_list,
    )
    # What an earlier sidecar_extra_env gave sidecars still running: accepted, not added.
    sidecar_accepted_env: tuple[tuple[str, str], ...] = option(
        (),
        "env an earlier --sidecar-extra-env gave sidecars that still run: accepted on a "
        "sidecar, not added (same JSON form)",
        parse=parse_env_list,
    )
    sidecar_mode: str = option(
        "native", "native sidecar init container, or a regular container", choices=SIDECAR_MODES
    )
    token_mode: str = option("file", "how apps get the endpoint's auth token", choices=TOKEN_MODES)
    region: str | None = option(None, "AWS region for STS and the apps' AWS_REGION")
    session_duration: int = option(
        3600,
        f"session seconds ({MIN_SESSION_DURATION}-{MAX_SESSION_DURATION})",
        limits=(MIN_SESSION_DURATION, MAX_SESSION_DURATION),
    )
    token_audience: str = option(
        "sidecred", "audience of the sidecar's projected token for STS (web-identity)"
    )
    broker_url: str | None = option(None, "broker source: https:// URL of `sidecred broker`")
    broker_ca_file: str | None = option(
        None, "broker source: CA bundle (PEM) that signed the broker's certificate"
    )
    # The PEM text of broker_ca_file, read once at start; it goes into the sidecar's env.
    broker_ca: str | None = option(None, "", cli=False)
    broker_audience: str = option(
        "sidecred-broker", "broker source: audience of the sidecar's projected token"
    )
    sidecar_port: int = option(61080, "credential endpoint port on 127.0.0.1", limits=PORTS)
    health_port: int = option(61081, "sidecar health port (probes)", limits=PORTS)
    # Container mode only: how long the sidecar keeps serving after SIGTERM so
    # apps can still fetch credentials while they shut down.
    drain_seconds: int = option(
        20, "container mode: seconds the sidecar serves after SIGTERM", limits=(0, 3600)
    )
    # Lifetime the kubelet requests for the projected service-account token; it
    # rotates the file at 80% of this, and the sidecar re-reads it on every call.
    token_expiration: int = option(
        86400,
        "expirationSeconds of the projected service-account token",
        limits=(600, 2**31 - 1),  # the API server's minimum is 600 s
    )
    sidecar_cpu_request: str = option("10m", "sidecar CPU request")
    # Measured (bench/RESULTS.md, Footprint): the serving process holds about 12 MB RSS
    # (5 MB anonymous); each `sidecred fetch` child adds about 17 MB RSS while it runs,
    # and at most two run at once (however many roles the pod has).
    sidecar_memory_request: str = option("16Mi", "sidecar memory request")
    # Each fetch starts an interpreter; a tight CPU limit slows every pod's start.
    sidecar_cpu_limit: str = option("500m", "sidecar CPU limit")
    sidecar_memory_limit: str = option("48Mi", "sidecar memory limit")
    # Pod-level: added to spec.imagePullSecrets, so the kubelet can pull sidecar_image.
    sidecar_image_pull_secrets: tuple[str, ...] = option(
        (), "comma-separated Secret names added to each injected pod's imagePullSecrets"
    )

    @property
    def sidecred_audiences(self) -> frozenset[str]:
        """The audiences only the canonical sidecar may hold a token for."""
        return frozenset((self.token_audience, self.broker_audience))

    @property
    def sidecar_repository_set(self) -> frozenset[str]:
        """Repositories whose image may run as the sidecar: --sidecar-image's and the mirrors."""
        return frozenset(map(image_repository, (self.sidecar_image, *self.sidecar_repositories)))

    @property
    def configured_sidecar_env(self) -> frozenset[tuple[str, str]]:
        """Every (name, value) configuration gives or gave a sidecar."""
        return frozenset(self.sidecar_extra_env + self.sidecar_accepted_env)

    def loggable(self) -> dict[str, object]:
        """The settings for a log line: env values (a proxy URL may hold a password) left out."""
        shown: dict[str, object] = dict(vars(self))
        for name in ("sidecar_extra_env", "sidecar_accepted_env"):
            shown[name] = [env_name for env_name, _ in getattr(self, name)]
        return shown

    @property
    def sidecar_token_audience(self) -> str:
        """The audience of the token the sidecar itself is given."""
        return self.broker_audience if self.credential_source == "broker" else self.token_audience


def env_name(option_name: str) -> str:
    """The env variable read for an option when its flag is absent."""
    return "SIDECRED_" + option_name.upper()


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one flag per Settings option (--base-role-arn, ...).

    Defaults are None so config_from_args can tell "flag absent" (use the
    SIDECRED_* env, then the dataclass default) from "flag given".
    """
    group = parser.add_argument_group("webhook options (each also read from SIDECRED_<NAME> env)")
    for f in fields(Settings):
        if not f.metadata["cli"]:
            continue
        help_ = f"{f.metadata['help']} [env {env_name(f.name)}]"
        if isinstance(f.default, bool):
            group.add_argument(
                _flag(f.name), dest=f.name, action="store_const", const="true", help=help_
            )
            continue
        choices = f.metadata["choices"]
        group.add_argument(
            _flag(f.name),
            dest=f.name,
            default=None,
            choices=choices,
            metavar=None if choices else "VALUE",
            help=help_,
        )


def _convert(f: Any, value: str, problems: list[str]) -> object:
    if f.metadata["parse"] is not None:
        return f.metadata["parse"](_flag(f.name), value, problems)
    choices = f.metadata["choices"]
    if choices and value not in choices:
        problems.append(f"{_flag(f.name)}={value!r} is not one of {', '.join(choices)}")
    if isinstance(f.default, bool):
        if value.lower() not in TRUE_WORDS + FALSE_WORDS:
            problems.append(f"{_flag(f.name)}={value!r} is not true or false")
        return value.lower() in TRUE_WORDS
    if f.metadata["limits"]:
        low, high = f.metadata["limits"]
        return int_in_range_or_problem(_flag(f.name), value, low, high, problems)
    if isinstance(f.default, tuple):
        return tuple(dict.fromkeys(item.strip() for item in value.split(",") if item.strip()))
    return value


def _read_broker_ca(path: str, problems: list[str]) -> str | None:
    """The PEM text of --broker-ca-file, checked to hold at least one certificate."""
    try:
        text = Path(path).read_text(encoding="ascii")
        if not x509.load_pem_x509_certificates(text.encode()):
            raise ValueError("no certificate")
    except (OSError, UnicodeError, ValueError) as exc:
        problems.append(f"--broker-ca-file={path!r} is not a readable PEM CA bundle ({exc})")
        return None
    return text


def _check_broker(values: dict[str, object], problems: list[str], read_ca: bool) -> None:
    if values["credential_source"] != "broker":
        return
    url = values["broker_url"]
    if not isinstance(url, str):
        problems.append("--credential-source broker needs --broker-url https://...")
    else:
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.hostname or parts.username or parts.query:
            problems.append(
                f"--broker-url={url!r} must be an https:// URL with a host (no user or query)"
            )
    path = values["broker_ca_file"]
    if not isinstance(path, str):
        problems.append("--credential-source broker needs --broker-ca-file (the broker's CA, PEM)")
    elif read_ca:
        values["broker_ca"] = _read_broker_ca(path, problems)


def _check_values(values: dict[str, object], problems: list[str], read_ca: bool = True) -> None:
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
    for name in cast(tuple[str, ...], values["sidecar_repositories"]):
        if any(c.isspace() for c in name):
            problems.append(f"--sidecar-repositories names {name!r}, which is not a repository")
    env_names = [name for name, _ in cast(tuple[tuple[str, str], ...], values["sidecar_extra_env"])]
    for name in sorted({n for n in env_names if env_names.count(n) > 1}):
        problems.append(f"--sidecar-extra-env sets {name} more than once")
    for name in ("sidecar_image", "token_audience", "broker_audience", "region"):
        value = values[name]
        if isinstance(value, str) and (not value or any(c.isspace() for c in value)):
            problems.append(f"{_flag(name)}={value!r} must be non-empty without spaces")
    if values["token_audience"] == values["broker_audience"]:
        problems.append("--token-audience and --broker-audience must differ")
    for name in ("sidecar_cpu_request", "sidecar_memory_request"):
        for kind in (name, name.replace("request", "limit")):
            if not QUANTITY_RE.fullmatch(str(values[kind])):
                problems.append(f"{_flag(kind)}={values[kind]!r} is not a quantity")
    for name in cast(tuple[str, ...], values["sidecar_image_pull_secrets"]):
        if not is_dns1123_subdomain(name):
            problems.append(
                f"--sidecar-image-pull-secrets names {name!r}, which is not a Secret name "
                "(lower-case DNS subdomain such as registry-corp)"
            )
    if values["sidecar_port"] == values["health_port"]:
        problems.append(
            f"--sidecar-port and --health-port are both {values['sidecar_port']}; they must differ"
        )
    if (
        values["credential_source"] == "assume-role"
        and not values["allow_unsafe_assume_role_node_credentials"]
    ):
        problems.append(
            "--credential-source assume-role gives the sidecar the node's instance-metadata "
            "credentials, which every container on the node can reach; it is unsafe for "
            f"multi-tenant clusters. Use web-identity or broker, or pass {UNSAFE_ASSUME_ROLE_FLAG}"
        )
    _check_broker(values, problems, read_ca)


def config_from_args(
    args: argparse.Namespace, env: Mapping[str, str] | None = None, *, read_broker_ca: bool = True
) -> Settings:
    """Build a validated Settings from parsed flags, falling back to env then defaults.

    Raises ValueError listing every invalid option, so the webhook refuses to start.
    `read_broker_ca=False` leaves `broker_ca` unset instead of reading --broker-ca-file: for
    tools away from the pod that mounts it, whose decisions do not depend on its text.
    """
    env = os.environ if env is None else env
    problems: list[str] = []
    values: dict[str, object] = {}
    for f in fields(Settings):
        value = getattr(args, f.name, None) if f.metadata["cli"] else None
        if value is None and f.metadata["cli"]:
            value = env.get(env_name(f.name)) or None
        values[f.name] = f.default if value is None else _convert(f, value.strip(), problems)
    _check_values(values, problems, read_broker_ca)
    if problems:
        raise ValueError("sidecred webhook: invalid options: " + "; ".join(problems))
    values["sidecar_image"] = sidecar_image_for(values)
    return Settings(**values)  # type: ignore[arg-type]


def sidecar_image_for(values: Mapping[str, object]) -> object:
    """The assume-role source signs with botocore, which only the `-assume-role` tag of the
    default sidecar image holds: that tag is the default for it. A chosen image is kept."""
    image = values["sidecar_image"]
    default = next(f.default for f in fields(Settings) if f.name == "sidecar_image")
    if values["credential_source"] == "assume-role" and image == default:
        return f"{default}-assume-role"
    return image
