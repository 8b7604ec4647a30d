"""Reviews of requests that reach the sidecar's identity without creating a pod
(SECURITY.md, Paths 1 and 3).

`serviceaccounts/token` CREATE (TokenRequest) for a sidecred audience, and
`pods/exec` / `pods/attach` CONNECT into the sidecar. Pure: each check takes
the AdmissionRequest and raises Refusal.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sidecred.pods.annotations import q
from sidecred.pods.names import SIDECAR_NAME
from sidecred.pods.refusal import Refusal
from sidecred.pods.settings import Settings

NODES_GROUP = "system:nodes"
CONNECT_SUBRESOURCES = ("exec", "attach")


def _is_subresource(
    request: Mapping[str, Any], resource: str, subresources: tuple[str, ...], operation: str
) -> bool:
    target = request.get("resource") or {}
    return (
        isinstance(target, dict)
        and target.get("group", "") == ""
        and target.get("resource") == resource
        and request.get("subResource") in subresources
        and request.get("operation") == operation
    )


def is_token_request(request: Mapping[str, Any]) -> bool:
    """A `serviceaccounts/token` CREATE (TokenRequest), as the API server sends it."""
    return _is_subresource(request, "serviceaccounts", ("token",), "CREATE")


def is_connect(request: Mapping[str, Any]) -> bool:
    """A `pods/exec` or `pods/attach` CONNECT (object: PodExecOptions / PodAttachOptions)."""
    return _is_subresource(request, "pods", CONNECT_SUBRESOURCES, "CONNECT")


def _object(request: Mapping[str, Any]) -> dict[str, Any]:
    obj = request.get("object")
    if not isinstance(obj, dict):
        raise Refusal("bad-request", "sidecred: request.object is not a JSON object", 400)
    return obj


def check_token_request(request: Mapping[str, Any], config: Settings) -> None:
    """A token for a sidecred audience is minted only by a node, for a pod's projected volume.

    The kubelet (group system:nodes, limited to its own pods by NodeRestriction)
    requests the canonical sidecar's token bound to the pod; nobody else may
    hold a token IAM or the broker trusts as sidecred's.
    """
    spec = _object(request).get("spec") or {}
    audiences = spec.get("audiences") if isinstance(spec, dict) else None
    if audiences is None:
        return  # the API server's default audience, never a sidecred one
    if not (isinstance(audiences, list) and all(isinstance(a, str) for a in audiences)):
        raise Refusal("bad-request", "sidecred: spec.audiences is not a list of strings", 400)
    wanted = sorted(set(audiences) & config.sidecred_audiences)
    if not wanted:
        return
    user = request.get("userInfo") or {}
    groups = user.get("groups") if isinstance(user, dict) else None
    bound = spec.get("boundObjectRef") or {}
    is_node = isinstance(groups, list) and NODES_GROUP in groups
    if is_node and isinstance(bound, dict) and bound.get("kind") == "Pod":
        return
    who = user.get("username", "") if isinstance(user, dict) else ""
    raise Refusal(
        "token-request",
        f"sidecred: {q(str(who), 120)} may not request a token for audience {q(wanted[0])} "
        f"(service account {q(str(request.get('name', '')), 120)}): only a node minting a "
        "pod's projected token for sidecred's sidecar may; request another audience",
    )


def check_connect(request: Mapping[str, Any]) -> None:
    """No exec or attach into the sidecar: it holds the pod's role and its identity token."""
    container = _object(request).get("container")
    if container != SIDECAR_NAME:
        # With no container named, the API server picks the only regular container;
        # the native sidecar is an init container and never picked, and in container
        # mode the pod has at least two regular containers, so one must be named.
        return
    kind = request.get("subResource")
    raise Refusal(
        "sidecar-exec",
        f"sidecred: kubectl {kind} into the {q(SIDECAR_NAME)} container is refused: it holds "
        "the pod's web identity token and role credentials. To debug credentials, run "
        "`kubectl sidecred status <pod>` or read the sidecar's log (`kubectl logs <pod> -c "
        f"{SIDECAR_NAME}`); to debug the app, exec into an application container",
    )
