"""The session names the webhook and the broker give a pod's role and its containers' own."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from sidecred.pods.annotations import SESSION_NAME_KEY, q
from sidecred.pods.refusal import Refusal
from sidecred.sidecar.session_name import build_session_name

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


def session_pod_label(pod: Mapping[str, Any]) -> str:
    """The pod's part of a container role's session name, the same at every admission stage.

    A pod created through generateName has no name when the mutating webhook sees it,
    so its generateName (without the trailing "-") stands in, there and later alike.
    """
    metadata = pod.get("metadata") or {}
    generate_name = str(metadata.get("generateName") or "")
    if generate_name:
        return generate_name.rstrip("-.") or generate_name
    return str(metadata.get("name") or "pod")


def container_session_name(namespace: str, pod_label: str, container: str) -> str:
    """`<namespace>.<pod>.<container>`, cut to STS's 64 characters with a hash like the pod's.

    `pod_label` is the pod's name, or the value of iam.amazonaws.com/session-name when set.
    """
    return build_session_name(namespace, f"{pod_label}.{container}")
