"""AdmissionReview wire shapes (admission.k8s.io/v1) and their parsing and serialising.

Two error channels (as kopf separates them): a malformed *webhook request*
raises ReviewError, which the HTTP edge answers with a 4xx JSON error; a
rejected *operation* is a Decision with allowed=False inside a well-formed
AdmissionReview response.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from typing import TYPE_CHECKING, Any, Literal, NotRequired, TypedDict

from sidecred.pods.annotations import q
from sidecred.pods.dns_names import is_dns1123_label
from sidecred.pods.shape import shown

if TYPE_CHECKING:
    from sidecred.webhook.decide import Decision

API_VERSION = "admission.k8s.io/v1"
KIND = "AdmissionReview"
# etcd stores objects up to 1.5 MiB and a review carries object and oldObject,
# so 3 MiB admits every real request and bounds what a hostile caller can send.
MAX_REVIEW_BYTES = 3 * 1024 * 1024
MAX_WARNINGS = 16  # in one answer
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
OPERATIONS = ("CREATE", "UPDATE", "DELETE", "CONNECT")
# The options object the API server passes per operation (CONNECT passes none).
_OPTIONS_KIND = {"CREATE": "CreateOptions", "UPDATE": "UpdateOptions", "DELETE": "DeleteOptions"}
# Who creates most pods: the ReplicaSet controller, as the API server reports it.
CONTROLLER_USER = {
    "username": "system:serviceaccount:kube-system:replicaset-controller",
    "groups": [
        "system:serviceaccounts",
        "system:serviceaccounts:kube-system",
        "system:authenticated",
    ],
}


class GroupVersionKind(TypedDict):
    group: str
    version: str
    kind: str


class GroupVersionResource(TypedDict):
    group: str
    version: str
    resource: str


POD_KIND = GroupVersionKind(group="", version="v1", kind="Pod")
POD_RESOURCE = GroupVersionResource(group="", version="v1", resource="pods")


class AdmissionRequest(TypedDict):
    uid: str
    kind: GroupVersionKind
    resource: GroupVersionResource
    operation: Literal["CREATE", "UPDATE", "DELETE", "CONNECT"]
    namespace: NotRequired[str]
    name: NotRequired[str]
    subResource: NotRequired[str]
    object: NotRequired[dict[str, Any] | None]
    oldObject: NotRequired[dict[str, Any] | None]
    dryRun: NotRequired[bool]
    userInfo: NotRequired[dict[str, Any]]
    requestKind: NotRequired[GroupVersionKind]
    requestResource: NotRequired[GroupVersionResource]
    requestSubResource: NotRequired[str]
    options: NotRequired[dict[str, Any] | None]


class Status(TypedDict):
    code: int
    message: str


class AdmissionResponse(TypedDict):
    uid: str
    allowed: bool
    status: NotRequired[Status]
    patchType: NotRequired[Literal["JSONPatch"]]
    patch: NotRequired[str]  # base64 of the JSON Patch document
    warnings: NotRequired[list[str]]


class AdmissionReview(TypedDict):
    apiVersion: str
    kind: str
    request: NotRequired[AdmissionRequest]
    response: NotRequired[AdmissionResponse]


def admission_request(
    *,
    kind: GroupVersionKind,
    resource: GroupVersionResource,
    operation: str,
    obj: Any,
    old_obj: Any = None,
    namespace: str = "",
    name: str = "",
    sub_resource: str = "",
    user_info: dict[str, Any] | None = None,
    dry_run: bool = False,
    uid: str | None = None,
) -> AdmissionRequest:
    """An AdmissionRequest exactly as the API server sends it (CreateV1AdmissionReview).

    Fields tagged `omitempty` are absent when empty (`subResource`, `requestSubResource`,
    `name` of a generateName pod, `namespace` of a cluster object, `userInfo.uid`,
    `groups`, `extra`); `object`/`oldObject` are null where the API server has none
    (oldObject on CREATE and CONNECT); `dryRun` is always a bool. The CEL `request`
    variable of matchConditions is this with `uid` "" and null `object`/`oldObject`.
    """
    request: dict[str, Any] = {
        "uid": uid or str(uuid.uuid4()),
        "kind": dict(kind),
        "resource": dict(resource),
        "requestKind": dict(kind),
        "requestResource": dict(resource),
        "operation": operation,
        "userInfo": {k: v for k, v in (user_info or {}).items() if v},
        "object": obj,
        "oldObject": old_obj,
        "dryRun": dry_run,
        "options": (
            {"apiVersion": "meta.k8s.io/v1", "kind": _OPTIONS_KIND[operation]}
            if operation in _OPTIONS_KIND
            else None
        ),
    }
    for key, value in (
        ("subResource", sub_resource),
        ("requestSubResource", sub_resource),
        ("name", name),
        ("namespace", namespace),
    ):
        if value:
            request[key] = value
    return request  # type: ignore[return-value]


def pod_request(
    pod: Any,
    *,
    operation: str = "CREATE",
    old_pod: Any = None,
    namespace: str | None = None,
    sub_resource: str = "",
    user_info: dict[str, Any] | None = None,
    dry_run: bool = False,
    uid: str | None = None,
) -> AdmissionRequest:
    """The AdmissionRequest for a pod (or a pod subresource such as ephemeralcontainers).

    `name` is the pod's metadata.name (absent for a generateName pod); the namespace
    is the argument, else the pod's metadata.namespace. `pod` need not be well formed.
    """
    metadata = pod.get("metadata") if isinstance(pod, dict) else None
    metadata = metadata if isinstance(metadata, dict) else {}
    name, pod_namespace = metadata.get("name"), metadata.get("namespace")
    return admission_request(
        kind=POD_KIND,
        resource=POD_RESOURCE,
        operation=operation,
        obj=pod,
        old_obj=old_pod,
        namespace=namespace or (pod_namespace if isinstance(pod_namespace, str) else ""),
        name=name if isinstance(name, str) else "",
        sub_resource=sub_resource,
        user_info=CONTROLLER_USER if user_info is None else user_info,
        dry_run=dry_run,
        uid=uid,
    )


def admission_review(request: AdmissionRequest) -> AdmissionReview:
    """The AdmissionReview envelope the API server posts around `request`."""
    return {"apiVersion": API_VERSION, "kind": KIND, "request": request}


class ReviewError(Exception):
    """A webhook request that is not a usable AdmissionReview.

    status_code: 400 malformed JSON or shape, 413 too large, 422 well-formed but
    not an admission.k8s.io/v1 AdmissionReview.
    """

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object, refusing repeated keys.

    With `{"iam.amazonaws.com/role": "a", "iam.amazonaws.com/role": "b"}` the API
    server and sidecred could read different values; the API server never sends
    duplicates, so a review that has them is refused rather than guessed at.
    """
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"duplicate key {q(key, 100)} in a JSON object")
            seen.add(key)
    return result


def _request_problems(request: dict[str, Any]) -> list[str]:
    """What is wrong with the request's own fields, each as "<what was expected>, got ..."."""
    problems: list[str] = []
    operation = request.get("operation")
    if operation not in OPERATIONS:
        problems.append(f"request.operation one of {', '.join(OPERATIONS)}, got {operation!r}")
    for name, keys in (
        ("kind", ("group", "version", "kind")),
        ("resource", ("group", "version", "resource")),
    ):
        value = request.get(name)
        if not isinstance(value, dict) or not all(isinstance(value.get(k), str) for k in keys):
            problems.append(
                f"request.{name} object with string {'/'.join(keys)}, got {shown(value)}"
            )
    for name in ("namespace", "name", "subResource"):
        if name in request and not isinstance(request[name], str):
            problems.append(f"request.{name} string, got {shown(request[name])}")
    namespace = request.get("namespace")
    if isinstance(namespace, str) and namespace and not is_dns1123_label(namespace):
        # Checked before anything looks it up, logs it or remembers it.
        problems.append(f"request.namespace a DNS-1123 label, got {shown(namespace)}")
    needs_object = operation in ("CREATE", "UPDATE")
    if needs_object and not isinstance(request.get("object"), dict):
        problems.append(f"request.object for {operation}, got {shown(request.get('object'))}")
    if operation == "UPDATE" and not isinstance(request.get("oldObject"), dict):
        problems.append(f"request.oldObject for UPDATE, got {shown(request.get('oldObject'))}")
    return problems


def parse_review(body: bytes) -> AdmissionRequest:
    """Return the validated `request` of an AdmissionReview, or raise ReviewError.

    Messages say what was expected and what arrived.
    """
    if len(body) > MAX_REVIEW_BYTES:
        raise ReviewError(
            413, f"AdmissionReview is {len(body)} bytes; the limit is {MAX_REVIEW_BYTES}"
        )
    if not body.strip():
        raise ReviewError(400, "expected an AdmissionReview JSON object, got an empty body")
    try:
        # Strict UTF-8 (json.loads on bytes would let UTF-8-encoded surrogates through).
        text = body.decode("utf-8")
        review = json.loads(
            text, parse_constant=_reject_constant, object_pairs_hook=_object_without_duplicates
        )
        # A "\ud800" escape yields a lone surrogate, which has no UTF-8 form: the API
        # server never sends one, and echoing it back would make the response unencodable.
        # Only an escape can make one (strict UTF-8 refused the rest), so the whole review
        # is re-encoded to find it only when the text has such an escape: that takes tens
        # of ms of a 3 MiB review, with the interpreter held throughout.
        if _SURROGATE_ESCAPE.search(text):
            json.dumps(review, ensure_ascii=False).encode("utf-8")
    except (UnicodeDecodeError, UnicodeEncodeError) as exc:
        raise ReviewError(
            400, f"expected an AdmissionReview JSON object in UTF-8: {exc.reason}"
        ) from None
    except (ValueError, RecursionError) as exc:
        raise ReviewError(400, f"expected an AdmissionReview JSON object: {exc}") from None
    if not isinstance(review, dict):
        raise ReviewError(400, f"expected an AdmissionReview JSON object, got {shown(review)}")
    request = review.get("request")
    uid = request.get("uid") if isinstance(request, dict) else None
    uid = uid if isinstance(uid, str) and uid else None

    api_version, kind = review.get("apiVersion"), review.get("kind")
    if api_version != API_VERSION or kind != KIND:
        raise ReviewError(
            422,
            f"expected apiVersion {API_VERSION!r} kind {KIND!r}, "
            f"got apiVersion {api_version!r} kind {kind!r}",
        )
    if not isinstance(request, dict):
        raise ReviewError(400, f"expected AdmissionReview.request object, got {shown(request)}")
    if uid is None:
        raise ReviewError(
            400, f"expected request.uid non-empty string, got {shown(request.get('uid'))}"
        )
    problems = _request_problems(request)
    if problems:
        raise ReviewError(400, "expected " + "; ".join(problems))
    return request  # type: ignore[return-value]


def bounded_warnings(warnings: tuple[str, ...]) -> list[str]:
    """At most MAX_WARNINGS, the last saying how many more there were (the API server
    truncates long lists of warnings too)."""
    if len(warnings) <= MAX_WARNINGS:
        return list(warnings)
    more = len(warnings) - MAX_WARNINGS + 1
    return [*warnings[: MAX_WARNINGS - 1], f"sidecred: and {more} more warnings"]


def build_review(uid: str, decision: Decision) -> AdmissionReview:
    """The AdmissionReview response for `decision`, carrying the request's uid."""
    response: AdmissionResponse = {"uid": uid, "allowed": decision.allowed}
    if not decision.allowed:
        response["status"] = {"code": decision.code, "message": decision.message}
    if decision.allowed and decision.patch:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(
            json.dumps(decision.patch, separators=(",", ":")).encode()
        ).decode()
    if decision.warnings:
        response["warnings"] = bounded_warnings(decision.warnings)
    return {"apiVersion": API_VERSION, "kind": KIND, "response": response}
