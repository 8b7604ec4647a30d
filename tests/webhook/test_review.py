"""AdmissionReview parsing and serialising: malformed requests get a clear ReviewError."""

from __future__ import annotations

import base64
import json

import pytest

from sidecred.webhook.decide import Decision
from sidecred.webhook.review import (
    MAX_REVIEW_BYTES,
    ReviewError,
    build_review,
    parse_review,
    pod_request,
)

POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": []}}
REQUEST = pod_request(POD, namespace="shop", uid="u-1")


def review(**changes: object) -> bytes:
    body = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": REQUEST}
    body.update(changes)
    return json.dumps(body).encode()


def test_parse_returns_request() -> None:
    assert parse_review(review()) == REQUEST


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        (b"", 400, "empty body"),
        (b"not json", 400, "expected an AdmissionReview JSON object"),
        (b"\xff\xfe", 400, "expected an AdmissionReview JSON object"),
        (b"[1, 2]", 400, "got an array"),
        (b'{"x": NaN}', 400, "NaN is not valid JSON"),
        (b"[" * 100000, 400, "expected an AdmissionReview JSON object"),
        (review(apiVersion="admission.k8s.io/v1beta1"), 422, "'admission.k8s.io/v1beta1'"),
        (
            review(kind="ConversionReview"),
            422,
            "got apiVersion 'admission.k8s.io/v1' kind 'ConversionReview'",
        ),
        (review(request=None), 400, "expected AdmissionReview.request object, got null"),
        (review(request={**REQUEST, "uid": ""}), 400, "request.uid"),
        (review(request={**REQUEST, "uid": 7}), 400, "request.uid"),
        (review(request={**REQUEST, "operation": "PATCH"}), 400, "request.operation"),
        (review(request={**REQUEST, "object": None}), 400, "request.object for CREATE"),
        (review(request={**REQUEST, "object": [1]}), 400, "got an array"),
        (
            review(request={**REQUEST, "operation": "UPDATE"}),
            400,
            "request.oldObject for UPDATE",
        ),
        (review(request={**REQUEST, "kind": "Pod"}), 400, "request.kind object"),
        (review(request={**REQUEST, "namespace": 3}), 400, "request.namespace string"),
        (b" " * (MAX_REVIEW_BYTES + 1), 413, "the limit is"),
    ],
)
def test_parse_refuses(body: bytes, status: int, fragment: str) -> None:
    with pytest.raises(ReviewError) as info:
        parse_review(body)
    assert info.value.status_code == status
    assert fragment in info.value.message


def test_delete_needs_no_object() -> None:
    request = {**REQUEST, "operation": "DELETE", "object": None, "oldObject": POD}
    assert parse_review(review(request=request))["operation"] == "DELETE"


def test_build_allowed_with_patch_and_warnings() -> None:
    patch = [{"op": "add", "path": "/metadata/annotations", "value": {"a": "b"}}]
    body = build_review(
        "u-1", Decision(allowed=True, patch=patch, warnings=("w",), reason="injected")
    )
    assert body["apiVersion"] == "admission.k8s.io/v1" and body["kind"] == "AdmissionReview"
    response = body["response"]
    assert response["uid"] == "u-1" and response["allowed"] is True
    assert response["patchType"] == "JSONPatch"
    assert json.loads(base64.b64decode(response["patch"])) == patch
    assert response["warnings"] == ["w"]
    assert "status" not in response


def test_build_denied_has_status_and_no_patch() -> None:
    decision = Decision(allowed=False, code=403, message="sidecred: no", reason="not-permitted")
    response = build_review("u-2", decision)["response"]
    assert response == {
        "uid": "u-2",
        "allowed": False,
        "status": {"code": 403, "message": "sidecred: no"},
    }


def test_build_allowed_without_patch() -> None:
    response = build_review("u-3", Decision(allowed=True, reason="no-role"))["response"]
    assert response == {"uid": "u-3", "allowed": True}
