"""Every annotation key sidecred reads or writes, the pod options reader, and the one
quoting function for values in messages."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sidecred.int_range import parse_int_in_range
from sidecred.pods.names import SIDECAR_NAME
from sidecred.pods.refusal import Refusal
from sidecred.pods.shape import MAX_CONTAINERS
from sidecred.sidecar.config import (
    MAX_SESSION_DURATION,
    MIN_SESSION_DURATION,
    TOKEN_MODES,
)

# --- pod annotations (the role key itself is configurable: --annotation-key) -------
ROLE_KEY = "iam.amazonaws.com/role"
EXTERNAL_ID_KEY = "iam.amazonaws.com/external-id"
SESSION_NAME_KEY = "iam.amazonaws.com/session-name"
SKIP_CONTAINERS_KEY = "sidecred.dev/skip-containers"
SESSION_DURATION_KEY = "sidecred.dev/session-duration"
TOKEN_MODE_KEY = "sidecred.dev/token-mode"
CONTAINER_ROLES_KEY = "sidecred.dev/container-roles"  # JSON: container -> role, "" = none
# --- written by the webhook --------------------------------------------------------
INJECTED_KEY = "sidecred.dev/injected"  # annotation: the role ARN the sidecar was injected for
INJECTED_LABEL = "sidecred.dev/injected"  # label "true": what pod watchers select by
EVENT_LABEL = "sidecred.dev/event"  # label on every Event sidecred posts, to read them back
DEFAULT_CONTAINER_KEY = "kubectl.kubernetes.io/default-container"  # container mode
# --- namespace policy ---------------------------------------------------------------
PERMITTED_KEY = "iam.amazonaws.com/permitted"  # kiam: RE2, full match on the role ARN
ALLOWED_ROLES_KEY = "iam.amazonaws.com/allowed-roles"  # kube2iam: JSON list of names/globs

# STS's own rules for these values.
EXTERNAL_ID_RE = re.compile(r"[A-Za-z0-9_+=,.@:/-]{2,1224}")
SESSION_NAME_RE = re.compile(r"[A-Za-z0-9_+=,.@-]{2,64}")
CONTAINER_NAME_RE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
QUOTED_CHARS = 200  # values quoted in messages are cut to this


def q(value: object, limit: int = QUOTED_CHARS) -> str:
    """The one way a value is shown in a message: as JSON, cut to `limit` characters.

    A string is cut before quoting (so the quotes stay balanced); anything else is
    shown as its JSON text.
    """
    if isinstance(value, str):
        return json.dumps(value if len(value) <= limit else value[:limit] + "...")
    shown = json.dumps(value)
    return shown if len(shown) <= limit else shown[:limit] + "..."


def annotations_of(obj: Mapping[str, Any]) -> dict[str, str]:
    return (obj.get("metadata") or {}).get("annotations") or {}


@dataclass(frozen=True)
class PodOptions:
    """The per-pod settings read from the pod's annotations, with config defaults filled in."""

    session_duration: int
    token_mode: str
    external_id: str | None = None
    session_name: str | None = None
    skip_containers: frozenset[str] = frozenset()


def _skip_list(raw: str | None, problems: list[str]) -> frozenset[str]:
    skip: set[str] = set()
    entries = (raw or "").split(",", MAX_CONTAINERS)
    if len(entries) > MAX_CONTAINERS:
        # More names than a pod may have containers: refused before each is read (every
        # one would cost a problem or a warning).
        problems.append(
            f"{SKIP_CONTAINERS_KEY} lists more than {MAX_CONTAINERS} names; a pod has at "
            f"most {MAX_CONTAINERS} containers"
        )
        return frozenset()
    for name in (part.strip() for part in entries):
        if not name:
            continue
        if not CONTAINER_NAME_RE.fullmatch(name):
            problems.append(f"{SKIP_CONTAINERS_KEY} entry {q(name, 80)} is not a container name")
        elif name == SIDECAR_NAME:
            problems.append(f"{SKIP_CONTAINERS_KEY} cannot name the sidecar {q(SIDECAR_NAME)}")
        skip.add(name)
    return frozenset(skip)


def read_pod_options(
    annotations: Mapping[str, str], session_duration: int, token_mode: str
) -> PodOptions:
    """Per-pod settings from annotations over the config defaults; Refusal on a bad value."""
    problems = []
    duration = session_duration
    raw = annotations.get(SESSION_DURATION_KEY)
    if raw is not None:
        try:
            duration = parse_int_in_range(
                SESSION_DURATION_KEY, raw, MIN_SESSION_DURATION, MAX_SESSION_DURATION,
                unit="seconds (SDKs refresh when under 15 minutes remain)",
            )  # fmt: skip
        except ValueError as exc:
            problems.append(str(exc))
    mode = annotations.get(TOKEN_MODE_KEY, token_mode)
    if mode not in TOKEN_MODES:
        problems.append(f"{TOKEN_MODE_KEY}={q(mode, 40)} is not one of {', '.join(TOKEN_MODES)}")
    external_id = annotations.get(EXTERNAL_ID_KEY)
    if external_id is not None and not EXTERNAL_ID_RE.fullmatch(external_id):
        problems.append(
            f"{EXTERNAL_ID_KEY} must be 2-1224 characters of letters, digits and _+=,.@:/-"
        )
    session_name = annotations.get(SESSION_NAME_KEY)
    if session_name is not None and not SESSION_NAME_RE.fullmatch(session_name):
        problems.append(
            f"{SESSION_NAME_KEY}={q(session_name, 80)} must be 2-64 characters of letters, "
            "digits and _+=,.@-"
        )
    skip = _skip_list(annotations.get(SKIP_CONTAINERS_KEY), problems)
    if problems:
        raise Refusal("bad-annotation", "sidecred: invalid pod annotations: " + "; ".join(problems))
    return PodOptions(duration, mode, external_id, session_name, skip)
