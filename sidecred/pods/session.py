"""The session name a pod's `iam.amazonaws.com/session-name` annotation asks for."""

from __future__ import annotations

from sidecred.pods.annotations import SESSION_NAME_KEY, q
from sidecred.pods.refusal import Refusal
from sidecred.sidecar.session_name import build_session_name


def custom_session_name(namespace: str, value: str) -> str:
    """`<namespace>.<value>` as the sidecar builds it, refused when cutting it to STS's 64
    characters would cut into the namespace prefix.

    The prefix must survive whole, so no pod can take a session name that starts
    with another namespace's name.
    """
    name = build_session_name(namespace, "", value)
    if not name.startswith(f"{namespace}."):
        raise Refusal(
            "bad-annotation",
            f"sidecred: namespace {q(namespace)} is too long to prefix the custom session name "
            f"of {SESSION_NAME_KEY}; remove the annotation to use <namespace>.<pod name>",
        )
    return name
