"""The STS role session a pod's credentials come from: its name (`<namespace>.<pod>`,
readable in CloudTrail) and its tags. The sidecar, the webhook and the broker all
build them here, so each gives the same session for the same pod. Standard library only.
"""

from __future__ import annotations

import re

# STS accepts RoleSessionName (and SourceIdentity) matching [\w+=,.@-]{2,64};
# AWS's \w is ASCII only.
_DISALLOWED = re.compile(r"[^A-Za-z0-9_+=,.@-]")
MAX_SESSION_NAME = 64
MIN_SESSION_NAME = 2
_HASH_CHARS = 8
# The room a cut name keeps before "-" and the hash.
CUT_KEEPS = MAX_SESSION_NAME - _HASH_CHARS - 1


def build_session_name(namespace: str, pod_name: str, override: str | None = None) -> str:
    """`<namespace>.<pod_name>`, or `<namespace>.<override>`, made acceptable to STS.

    The namespace always comes first (an override that already starts with it
    is kept), so no pod takes a session name that passes for another namespace's.

    Disallowed characters become `-`; then a name over 64 characters is cut and
    ends with `-` plus a short hash of the full original, so two long names that
    share a prefix still get distinct session names.
    """
    prefix = f"{namespace}."
    if override:
        raw = override if override.startswith(prefix) else prefix + override
    else:
        raw = prefix + pod_name
    name = _DISALLOWED.sub("-", raw)
    if len(name) > MAX_SESSION_NAME:
        # Imported here: hashlib loads OpenSSL, which the serving process otherwise never needs.
        import hashlib

        digest = hashlib.sha256(raw.encode()).hexdigest()[:_HASH_CHARS]
        name = name[:CUT_KEEPS] + "-" + digest
    if len(name) < MIN_SESSION_NAME:
        name = (name + "--")[:MIN_SESSION_NAME]
    return name


def container_session_name(namespace: str, pod_label: str, container: str) -> str:
    """`<namespace>.<pod>.<container>`, cut to STS's 64 characters with a hash like the pod's.

    `pod_label` is the pod's name, or the value of iam.amazonaws.com/session-name when set.
    """
    return build_session_name(namespace, f"{pod_label}.{container}")


def session_tags(
    namespace: str, pod_name: str, pod_uid: str, service_account: str
) -> tuple[tuple[str, str], ...]:
    """The session tags EKS Pod Identity sets (its names), so ABAC policies carry over."""
    return (
        ("kubernetes-namespace", namespace),
        ("kubernetes-pod-name", pod_name),
        ("kubernetes-pod-uid", pod_uid),
        ("kubernetes-service-account", service_account),
    )


def sts_tags(tags: tuple[tuple[str, str], ...]) -> list[dict[str, str]]:
    """Session tags as sts:AssumeRole's `Tags` parameter takes them."""
    return [{"Key": key, "Value": value} for key, value in tags]
