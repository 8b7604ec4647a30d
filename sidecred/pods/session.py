"""The session names the webhook and the broker give a pod's role and its containers' own."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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


def session_pod_label(pod: Mapping[str, Any]) -> str:
    """The pod's part of a container role's session name, the same at every admission stage.

    A pod created through generateName has no name when the mutating webhook sees it,
    so its generateName (without the trailing "-") stands in, there and later alike. The
    sidecar and the broker, which know the pod's name, name the sessions after it unless
    the pod has a custom session name.
    """
    metadata = pod.get("metadata") or {}
    generate_name = str(metadata.get("generateName") or "")
    if generate_name:
        return generate_name.rstrip("-.") or generate_name
    return str(metadata.get("name") or "pod")
