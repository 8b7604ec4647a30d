"""The session name the webhook and the broker give a pod's role session."""

from __future__ import annotations

import hashlib

from sidecred.pods.annotations import SESSION_NAME_KEY, q
from sidecred.pods.refusal import Refusal

SESSION_NAME_MAX = 64  # STS RoleSessionName limit


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
