"""Property fuzzing of the pure core: parse_review, decide_mutation, decide_validation.

Properties: parsing junk raises only ReviewError with a 4xx; a decision never
raises, is well formed and serialisable exactly as the HTTP edge serialises it;
the same input and token factory give the same decision, and the input is left
untouched; a permitted pod's patch applies cleanly, the validating webhook
accepts the result, and mutating the patched pod again adds nothing.
"""

from __future__ import annotations

import base64
import copy
import itertools
import json
from collections.abc import Callable
from typing import Any

import jsonpatch
import kubernetes_validate
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sidecred.webhook.decide import Decision, decide_mutation, decide_validation
from sidecred.webhook.review import ReviewError, build_review, parse_review
from tests.hardening.webhook.examples import count_example, fuzz
from tests.hardening.webhook.strategies import (
    CAPABILITIES,
    CONFIGS,
    HOST_PATHS,
    admission_request,
    json_values,
    junked,
    namespaces,
    requests,
    review_bytes,
    reviews,
)

pytestmark = [pytest.mark.fuzz, pytest.mark.slow]

TOKEN = "fuzz-token-0123456789abcdefghijklmnopqrstuvw"


def tokens(prefix: str = TOKEN) -> Callable[[], str]:
    """Token mode env's source for one decision: each role's token its own, as in production."""
    count = itertools.count()
    return lambda: f"{prefix}-{next(count)}"


DENY_CODES = {400, 403, 503}


def serialise(uid: str, decision: Decision) -> dict[str, Any]:
    """The response body exactly as Starlette's JSONResponse renders it (UTF-8, no ASCII escaping)."""
    body = json.dumps(build_review(uid, decision), ensure_ascii=False, allow_nan=False)
    return json.loads(body.encode("utf-8"))


def check_decision(decision: Decision, uid: str) -> None:
    assert isinstance(decision.allowed, bool)
    if decision.allowed:
        assert decision.code == 200
    else:
        assert decision.code in DENY_CODES, decision
        assert decision.message.startswith("sidecred: "), decision.message
        assert "Traceback" not in decision.message
        assert decision.patch is None
    review = serialise(uid, decision)
    response = review["response"]
    assert review["apiVersion"] == "admission.k8s.io/v1" and review["kind"] == "AdmissionReview"
    assert response["uid"] == uid
    assert response["allowed"] is decision.allowed
    if "patch" in response:
        ops = json.loads(base64.b64decode(response["patch"]))
        assert ops == decision.patch and response["patchType"] == "JSONPatch"


@fuzz(3000)
@given(st.binary(max_size=400))
def test_parse_review_random_bytes(body: bytes) -> None:
    count_example("parse_review random bytes")
    try:
        parse_review(body)
    except ReviewError as exc:
        assert 400 <= exc.status_code < 500


@fuzz(750)
@given(st.data())
def test_parse_review_mutated_reviews(data: st.DataObject) -> None:
    """A real review with nodes replaced by junk, then sometimes cut or byte-flipped."""
    count_example("parse_review mutated reviews")
    request = data.draw(requests(junk=False))
    review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}
    body = json.dumps(data.draw(junked(review))).encode()
    choice = data.draw(st.integers(0, 3))
    if choice == 1:
        body = body[: data.draw(st.integers(0, len(body)))]
    elif choice == 2:
        index = data.draw(st.integers(0, len(body) - 1))
        body = body[:index] + bytes([data.draw(st.integers(0, 255))]) + body[index + 1 :]
    try:
        parsed = parse_review(body)
    except ReviewError as exc:
        assert 400 <= exc.status_code < 500
        return
    # Whatever parses is a request the deciders can take without crashing.
    for config in CONFIGS[:2]:
        check_decision(decide_mutation(parsed, None, config, new_token=tokens()), parsed["uid"])
        check_decision(decide_validation(parsed, None, config), parsed["uid"])


@fuzz(1500)
@given(reviews(), namespaces(), st.sampled_from(CONFIGS))
def test_decisions_are_total_well_formed_and_deterministic(
    request: dict[str, Any], namespace: dict[str, Any] | None, config: Any
) -> None:
    count_example("decide: total, well formed, deterministic")
    count_example(f"decide: {request['kind']['kind']} {request['operation']} reviews")
    before = copy.deepcopy(request), copy.deepcopy(namespace)
    error = "" if namespace is not None else "connection refused"
    for decide in (decide_mutation, decide_validation):
        kwargs: dict[str, Any] = {"namespace_error": error}
        if decide is decide_mutation:
            kwargs["new_token"] = tokens()
        first = decide(request, namespace, config, **kwargs)
        check_decision(first, request["uid"])
        if decide is decide_mutation:
            kwargs["new_token"] = tokens()
        assert decide(request, namespace, config, **kwargs) == first
        assert (request, namespace) == before, "the decision changed its input"


@fuzz(1000)
@given(requests(junk=False), namespaces(), st.sampled_from(CONFIGS))
def test_permitted_patch_applies_validates_and_is_idempotent(
    request: dict[str, Any], namespace: dict[str, Any] | None, config: Any
) -> None:
    count_example("mutate: patch applies, validates, idempotent")
    request = dict(request, operation="CREATE", oldObject=None)
    request.pop("subResource", None)
    decision = decide_mutation(request, namespace, config, new_token=tokens())
    if not decision.allowed or not decision.patch:
        return
    patched = jsonpatch.apply_patch(request["object"], decision.patch)
    again = decide_mutation(
        dict(request, object=patched), namespace, config, new_token=tokens("another-token")
    )
    assert again.allowed and again.patch is None, again
    validated = decide_validation(dict(request, object=patched), namespace, config)
    assert validated.allowed, validated.message


def _views_of_the_sidecar(
    pod: dict[str, Any], judged: list[dict[str, Any]], *, declared: bool
) -> list[str]:
    """What gives a `judged` container a view of the sidecar's token, by the strategies'
    own labels of each path and capability (not by the webhook's code)."""
    spec = pod["spec"]
    found = [f for f in ("shareProcessNamespace", "hostPID", "hostIPC") if spec.get(f)]
    exposing = {
        v["name"]
        for v in spec.get("volumes") or []
        if HOST_PATHS.get((v.get("hostPath") or {}).get("path"), False)
    }
    if declared:
        found += sorted(exposing)
    for container in judged:
        context = container.get("securityContext") or {}
        added = (context.get("capabilities") or {}).get("add") or []
        if context.get("privileged") is True or any(CAPABILITIES[c] for c in added):
            found.append(container["name"])
        if exposing & {m["name"] for m in container.get("volumeMounts") or []}:
            found.append(container["name"])
    return found


def _has_sidecar(pod: dict[str, Any]) -> bool:
    spec = pod["spec"]
    containers = (spec.get("initContainers") or []) + spec["containers"]
    return any(c["name"] == "sidecred" for c in containers)


def _all_containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod["spec"]
    lists = ("initContainers", "containers", "ephemeralContainers")
    return [c for name in lists for c in spec.get(name) or []]


@fuzz(1000)
@given(requests(junk=False), namespaces(), st.sampled_from(CONFIGS))
def test_no_admitted_pod_shows_the_sidecar_to_another_container(
    request: dict[str, Any], namespace: dict[str, Any] | None, config: Any
) -> None:
    """The rule behind path 6: whatever is admitted with the sidecar (created, injected,
    or given a new ephemeral container) gives no other container a view of its token."""
    count_example("isolation: no admitted pod shows the sidecar's token")
    pod = request["object"]
    if request.get("subResource") == "ephemeralcontainers":
        decision = decide_validation(request, namespace, config)
        if decision.allowed and _has_sidecar(pod):
            old = {c["name"] for c in request["oldObject"]["spec"].get("ephemeralContainers") or []}
            new = [c for c in pod["spec"]["ephemeralContainers"] if c["name"] not in old]
            assert not _views_of_the_sidecar(pod, new, declared=False), decision
        return
    request = dict(request, operation="CREATE", oldObject=None)
    request.pop("subResource", None)
    decision = decide_mutation(request, namespace, config, new_token=tokens())
    if decision.allowed and decision.patch:
        pod = jsonpatch.apply_patch(pod, decision.patch)
    if decision.allowed and _has_sidecar(pod):
        assert not _views_of_the_sidecar(pod, _all_containers(pod), declared=True), decision
    validated = decide_validation(dict(request, object=pod), namespace, config)
    if validated.allowed and _has_sidecar(pod):
        assert not _views_of_the_sidecar(pod, _all_containers(pod), declared=True), validated


@fuzz(1000)
@given(json_values)
def test_parse_review_arbitrary_json_documents(value: Any) -> None:
    count_example("parse_review arbitrary JSON documents")
    review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": value}
    for document in (value, review):
        try:
            parse_review(json.dumps(document).encode())
        except ReviewError as exc:
            assert 400 <= exc.status_code < 500


SCHEMA_VERSION = kubernetes_validate.latest_version()


def schema_valid(pod: dict[str, Any]) -> bool:
    try:
        kubernetes_validate.validate(pod, SCHEMA_VERSION, strict=True)
    except kubernetes_validate.ValidationError:
        return False
    return True


@fuzz(75)
@given(requests(junk=False), st.sampled_from(CONFIGS[:3]))
def test_patched_pod_of_a_schema_valid_pod_is_schema_valid(
    request: dict[str, Any], config: Any
) -> None:
    """Strict OpenAPI validation is slow (tens of ms), so this property gets fewer examples."""
    count_example("mutate: patched pod passes kubernetes_validate strict")
    request = dict(request, operation="CREATE", oldObject=None)
    request.pop("subResource", None)
    namespace = {"metadata": {"name": "shop", "annotations": {"iam.amazonaws.com/permitted": ".*"}}}
    decision = decide_mutation(request, namespace, config, new_token=tokens())
    if not decision.allowed or not decision.patch or not schema_valid(request["object"]):
        return
    patched = jsonpatch.apply_patch(request["object"], decision.patch)
    assert schema_valid(patched), patched


def test_admission_request_helper_matches_parse_review() -> None:
    """The strategies build requests parse_review accepts, so the fuzzing reaches the deciders."""
    pod = {"metadata": {"annotations": {}}, "spec": {"containers": [{"name": "app"}]}}
    assert parse_review(review_bytes(admission_request(pod)))["object"] == pod
