"""The STS role session name: `<namespace>.<pod>`, readable in CloudTrail."""

from __future__ import annotations

import hashlib
import re

# STS accepts RoleSessionName (and SourceIdentity) matching [\w+=,.@-]{2,64};
# AWS's \w is ASCII only.
_DISALLOWED = re.compile(r"[^A-Za-z0-9_+=,.@-]")
MAX_SESSION_NAME = 64
MIN_SESSION_NAME = 2
_HASH_CHARS = 8


def build_session_name(namespace: str, pod_name: str, override: str | None = None) -> str:
    """`<namespace>.<pod_name>`, or `<namespace>.<override>`, made acceptable to STS.

    The namespace always comes first (an override that already starts with it
    is kept), so no pod takes a session name that passes for another namespace's.

    Disallowed characters become `-`. A name over 64 characters is cut and ends
    with `-` plus a short hash of the full original, so two long pod names
    that share a prefix still get distinct session names.
    """
    prefix = f"{namespace}."
    if override:
        raw = override if override.startswith(prefix) else prefix + override
    else:
        raw = prefix + pod_name
    name = _DISALLOWED.sub("-", raw)
    if len(name) > MAX_SESSION_NAME:
        digest = hashlib.sha256(raw.encode()).hexdigest()[:_HASH_CHARS]
        name = name[: MAX_SESSION_NAME - _HASH_CHARS - 1] + "-" + digest
    if len(name) < MIN_SESSION_NAME:
        name = (name + "--")[:MIN_SESSION_NAME]
    return name
