"""Property fuzzing of the HTTP layer: the real FastAPI app in-process with a fake namespace source.

Whatever arrives at /mutate or /validate, the answer is never a 5xx: it is a
well-formed AdmissionReview carrying the request's uid (200) or a JSON error
with a 4xx status, and a permitted pod's patch applies to the pod it came with.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import jsonpatch
import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.testclient import TestClient

from sidecred.pods.settings import Settings
from sidecred.webhook.app import create_app
from sidecred.webhook.metrics import WebhookMetrics
from tests.hardening.webhook.examples import count_example, fuzz
from tests.hardening.webhook.strategies import (
    BASE_ROLE_ARN,
    NAMESPACE,
    json_values,
    junked,
    requests,
    review_bytes,
    reviews,
)
from tests.support.static_namespaces import StaticNamespaces

pytestmark = [pytest.mark.fuzz, pytest.mark.slow]

POLICY = {"iam.amazonaws.com/permitted": BASE_ROLE_ARN + "shop-.*"}
CONTENT_TYPES = ("application/json", "application/json; charset=utf-8", "text/plain", "")


@pytest.fixture(scope="module")
def http() -> Iterator[TestClient]:
    app = create_app(
        Settings(base_role_arn=BASE_ROLE_ARN),
        StaticNamespaces({"metadata": {"name": NAMESPACE, "annotations": POLICY}}),
        WebhookMetrics(),
    )
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def check_answer(response: Any, sent_uid: Any = None) -> dict[str, Any] | None:
    """A 200 AdmissionReview echoing the uid, or a 4xx JSON error; returns the review's response."""
    assert response.status_code < 500, response.text
    body = response.json()
    if response.status_code != 200:
        assert 400 <= response.status_code < 500
        assert isinstance(body.get("error"), str) and "Traceback" not in body["error"]
        return None
    assert body["apiVersion"] == "admission.k8s.io/v1" and body["kind"] == "AdmissionReview"
    answer = body["response"]
    if sent_uid is not None:
        assert answer["uid"] == sent_uid
    assert isinstance(answer["allowed"], bool)
    if not answer["allowed"]:
        assert answer["status"]["message"].startswith("sidecred: ")
        assert "patch" not in answer
    return answer


def post(http: TestClient, path: str, body: bytes, content_type: str = "application/json") -> Any:
    headers = {"Content-Type": content_type} if content_type else {}
    return http.post(path, content=body, headers=headers)


@fuzz(1000)
@given(
    st.sampled_from(("/mutate", "/validate")),
    st.binary(max_size=300),
    st.sampled_from(CONTENT_TYPES),
)
def test_random_bodies_get_a_4xx(
    http: TestClient, path: str, body: bytes, content_type: str
) -> None:
    count_example("http: random bodies")
    check_answer(post(http, path, body, content_type))


@fuzz(400)
@given(st.sampled_from(("/mutate", "/validate")), st.data())
def test_mutated_reviews_never_5xx(http: TestClient, path: str, data: st.DataObject) -> None:
    count_example("http: mutated reviews")
    request = data.draw(requests(junk=False))
    review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}
    body = json.dumps(data.draw(junked(review))).encode()
    if data.draw(st.booleans()):
        cut = data.draw(st.integers(0, len(body)))
        body = body[:cut] + data.draw(st.binary(max_size=8)) + body[cut:]
    check_answer(post(http, path, body))


@fuzz(750)
@given(
    st.sampled_from(("/mutate", "/validate")),
    reviews(),
    st.one_of(st.just("705ab4f5-6393-11e8-b7cc-42010a800002"), st.text(min_size=1, max_size=40)),
)
def test_reviews_are_answered_with_their_uid(
    http: TestClient, path: str, request: dict[str, Any], uid: str
) -> None:
    count_example("http: reviews answered with their uid")
    request = dict(request, uid=uid)
    response = post(http, path, review_bytes(request))
    answer = check_answer(response)
    if answer is None:
        return
    assert answer["uid"] == uid
    if "patch" in answer:
        ops = json.loads(base64.b64decode(answer["patch"]))
        jsonpatch.apply_patch(request["object"], ops)  # only pod CREATEs are patched


@fuzz(750)
@given(st.sampled_from(("/mutate", "/validate")), json_values)
def test_arbitrary_json_documents_get_a_4xx(http: TestClient, path: str, value: Any) -> None:
    count_example("http: arbitrary JSON documents")
    check_answer(post(http, path, json.dumps(value).encode()))
