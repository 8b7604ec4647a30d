"""Namespace policy checked when it is written: the fixtures in
fixtures/namespace-*.yaml through the pure decision and the /validate dispatch, the
risky-pattern probes, and one refusal and one warning through the real webhook over TLS."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import re2
import yaml
from hypothesis import given
from hypothesis import strategies as st

from sidecred.pods.policy import (
    ALLOWED_ROLES_KEY,
    PERMITTED_KEY,
    compile_allowed_roles,
    compile_permitted,
    evaluate_policy,
)
from sidecred.pods.settings import Settings
from sidecred.webhook.decide import Decision, decide_validation
from sidecred.webhook.namespace_review import (
    decide_namespace,
    review_namespace,
    risky_pattern_warnings,
    with_namespace_review,
)
from sidecred.webhook.pattern_witness import witnesses
from sidecred.webhook.review import parse_review
from tests.webhook.fixture_cases import BASE_ROLE_ARN, FIXTURES
from tests.webhook_server.conftest import start_stub
from tests.webhook_server.webhook_process import SNI, WebhookProcess, start_webhook

PATHS = sorted(FIXTURES.glob("namespace-*.yaml"))
SCHEMA_VERSION = kubernetes_validate.latest_version()


def load(path: Path) -> dict[str, Any]:
    case = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert set(case) <= {"description", "config", "request", "expect"}, path.name
    return case


def review_of(request: dict[str, Any]) -> bytes:
    return json.dumps(
        {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}
    ).encode()


def config_of(case: dict[str, Any]) -> Settings:
    return Settings(**{"base_role_arn": BASE_ROLE_ARN, **(case.get("config") or {})})


def assert_expected(decision: Decision, expect: dict[str, Any]) -> None:
    assert decision.allowed is expect["allowed"], decision.message
    assert decision.reason == expect["reason"]
    for fragment in expect.get("message", []):
        assert fragment in decision.message
    if "warnings" in expect:
        if not expect["warnings"]:
            assert decision.warnings == ()
        for fragment in expect["warnings"]:
            assert any(fragment in w for w in decision.warnings), (fragment, decision.warnings)
    assert decision.patch is None


def test_fixtures_cover_each_refusal_and_warning() -> None:
    cases = [load(p)["expect"] for p in PATHS]
    refused = [e for e in cases if not e["allowed"]]
    warned = " ".join(w for e in cases if e["allowed"] for w in e.get("warnings", []))
    assert len(refused) >= 5
    for what in ("deeper paths", "every role in account", "every AWS account"):
        assert what in warned


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_namespace_fixture(path: Path) -> None:
    case = load(path)
    request = parse_review(review_of(case["request"]))  # the shape the API server sends
    for obj in (request["object"], request.get("oldObject")):
        if obj is not None:
            assert kubernetes_validate.validate(obj, SCHEMA_VERSION, strict=True)
    decision = decide_namespace(request, config_of(case))
    assert_expected(decision, case["expect"])
    # The /validate route's dispatch gives the same answer.
    routed = with_namespace_review(decide_validation)(request, None, config_of(case))
    assert routed == decision


def test_refusal_is_the_message_admission_gives_the_pods() -> None:
    case = load(FIXTURES / "namespace-create-bad-regex-refused.yaml")
    annotations = case["request"]["object"]["metadata"]["annotations"]
    pod_denial = evaluate_policy(BASE_ROLE_ARN + "shop-reader", "shop", annotations, BASE_ROLE_ARN)
    decision = decide_namespace(case["request"], config_of(case))
    assert pod_denial.reason == "bad-policy" and decision.message == pod_denial.message


def test_pods_still_go_to_pod_validation() -> None:
    calls: list[dict[str, Any]] = []

    def pod_validation(request: dict[str, Any], *_: Any, **__: Any) -> Decision:
        calls.append(request)
        return Decision(allowed=False, message="pod path", reason="forged-sidecar")

    request = {"kind": {"group": "", "version": "v1", "kind": "Pod"}, "resource": {"group": "", "version": "v1", "resource": "pods"}}  # fmt: skip
    assert with_namespace_review(pod_validation)(request, None, Settings()).reason == (
        "forged-sidecar"
    )
    assert calls == [request]


@pytest.mark.parametrize(
    ("pattern", "warned"),
    [
        ("arn:aws:iam::111122223333:role/shop-[^/]*", False),
        ("arn:aws:iam::111122223333:role/(shop|cart)-reader", False),
        ("arn:aws:iam::111122223333:role/shop-[a-z0-9-]+", False),
        ("arn:aws:iam::111122223333:role/shop/.+", True),
        ("arn:aws:iam::111122223333:role/shop-.*?", True),
        ("arn:aws:iam::(111122223333|444455556666):role/x", False),
        ("arn:aws:iam::111122223333:role/\\w+", True),  # every top-level role name
        ("(?:.*)", True),
    ],
)
def test_risky_patterns(pattern: str, warned: bool) -> None:
    warnings = risky_pattern_warnings("iam.amazonaws.com/permitted", compile_permitted(pattern))
    assert bool(warnings) is warned, warnings
    for warning in warnings:
        # Every example a warning quotes is one the policy really permits.
        for quoted in [w for w in warning.split('"') if w.startswith("arn:")]:
            assert compile_permitted(pattern).fullmatch(quoted), quoted


_ATOMS = ["a", "shop", "-", ".", "/", "[^/]", "[a-z0-9-]", "\\w", "\\d", "\\S", "[]a]",
          "(shop|cart)", "(?:x|y)", "(?P<n>q)", "[0-9]", "\\.", "[/a]", "\\x41", "(?i:z)"]  # fmt: skip
_REPEATS = ["", "*", "+", "?", "{2}", "{1,3}", "*?", "{0,}", "{0,64}"]
_PREFIXES = ["arn:aws:iam::111122223333:role/", "arn:aws:iam::[0-9]{12}:role/",
             "arn:aws:iam::(111122223333|444455556666):role/", "(?i)arn:.*:iam::\\d+:role/", ""]  # fmt: skip


@given(
    st.sampled_from(_PREFIXES),
    st.lists(st.tuples(st.sampled_from(_ATOMS), st.sampled_from(_REPEATS)), max_size=5),
)
def test_every_witness_is_matched_by_the_pattern(prefix: str, parts: list[tuple[str, str]]) -> None:
    """The witnesses built from a pattern's syntax are strings RE2 itself full-matches."""
    pattern = prefix + "".join(atom + repeat for atom, repeat in parts)
    built = witnesses(pattern)
    assert set(built) == {"", "a/a", "0" * 12}
    for witness in built.values():
        assert compile_permitted(pattern).fullmatch(witness), (pattern, witness)


@pytest.mark.parametrize("pattern", ["(a)\\1", "\\pL+", "\\Qa.b\\E", "[[:alpha:]]", "a{", "(a"])
def test_a_pattern_the_reader_does_not_follow_gives_no_witness(pattern: str) -> None:
    assert witnesses(pattern) == {}


# --- through the real webhook over TLS ----------------------------------------------


@pytest.fixture(scope="module")
def webhook(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebhookProcess]:
    stub = start_stub()
    process = start_webhook(tmp_path_factory.mktemp("namespace-review"), stub.url)
    yield process
    process.stop()
    stub.stop()


@pytest.mark.parametrize(
    "stem",
    ["namespace-create-bad-regex-refused", "namespace-create-dot-star-crosses-path-warning"],
)
def test_over_tls(webhook: WebhookProcess, stem: str) -> None:
    case = load(FIXTURES / f"{stem}.yaml")
    with webhook.client() as http:
        answer = http.post(
            "/validate",
            content=review_of(case["request"]),
            headers={"Content-Type": "application/json"},
            extensions=SNI,
        )
    assert answer.status_code == 200, answer.text
    response = answer.json()["response"]
    expect = case["expect"]
    assert response["uid"] == case["request"]["uid"]
    assert response["allowed"] is expect["allowed"]
    if not expect["allowed"]:
        assert response["status"]["code"] == 403
        for fragment in expect["message"]:
            assert fragment in response["status"]["message"]
    for fragment in expect.get("warnings", []):
        assert any(fragment in w for w in response.get("warnings", [])), response


def test_patterns_a_caller_sends_are_not_kept() -> None:
    """A Namespace review carries the caller's patterns; they are compiled for that review
    alone. Kept in the admissions' cache, 512 callers' patterns held hundreds of MB."""
    compile_permitted.cache_clear()
    kept_by_re2 = re2._Regexp._make.cache_info().currsize  # re2.compile's own cache
    for index in range(600):
        pattern = f"(?:x{index})" + "[a-z0-9]{100}" * 12
        namespace = {"metadata": {"name": "ns", "annotations": {PERMITTED_KEY: pattern}}}
        assert review_namespace(namespace, None, Settings()).allowed
    assert compile_permitted.cache_info().currsize == 0
    assert re2._Regexp._make.cache_info().currsize == kept_by_re2
    compile_allowed_roles.cache_clear()
    allowed = {"metadata": {"name": "ns", "annotations": {ALLOWED_ROLES_KEY: '["shop-*"]'}}}
    assert review_namespace(allowed, None, Settings(base_role_arn=BASE_ROLE_ARN)).allowed
    assert compile_allowed_roles.cache_info().currsize == 0
