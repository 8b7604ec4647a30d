"""Hostile namespace policies and request bodies are decided in bounded time, never crash.

The bound is pytest-timeout on each test (sidecred must return a decision well
within it). The comparison is measured once, in a subprocess: Python's own
backtracking `re` does not finish the same match within 2 seconds, which is
why the policy is evaluated with RE2.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from sidecred.pods.policy import ALLOWED_ROLES_KEY, PERMITTED_KEY, evaluate_policy
from sidecred.pods.settings import Settings
from sidecred.webhook.decide import decide_mutation
from sidecred.webhook.review import ReviewError, parse_review
from tests.hardening.webhook.strategies import BASE_ROLE_ARN, admission_request

# Denials here show the policy (--explain-denials): the tests read why it was refused.
CONFIG = Settings(base_role_arn=BASE_ROLE_ARN, explain_denials=True)
# A valid role ARN: 63 "a"s and a "-" (a role name is at most 64 characters), so
# every pattern below fails only after trying every way to split the run of "a"s.
LONG_A_ROLE = BASE_ROLE_ARN + "a" * 63 + "-"
CATASTROPHIC = {
    # Nested quantifiers: exponential in the run of "a"s for a backtracking engine.
    "nested-plus": "arn:aws:iam::111122223333:role/(a+)+$",
    "overlapping-alternation": "arn:aws:iam::111122223333:role/(a|aa)*b",
    "nested-star": "arn:aws:iam::111122223333:role/(a*)*b",
}
PYTHON_RE_PROBE_SECONDS = 2.0


def pod_for(role: str) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "shop", "annotations": {"iam.amazonaws.com/role": role}},
        "spec": {"containers": [{"name": "app", "image": "app:1"}]},
    }


def namespace_with(annotations: dict[str, str]) -> dict[str, Any]:
    return {"metadata": {"name": "shop", "annotations": annotations}}


def decide(role: str, annotations: dict[str, str]):
    request = admission_request(pod_for(role))
    return decide_mutation(request, namespace_with(annotations), CONFIG, new_token=lambda: "t")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", sorted(CATASTROPHIC))
def test_python_re_backtracks_on_the_pattern_sidecred_decides_at_once(name: str) -> None:
    pattern = CATASTROPHIC[name]
    probe = textwrap.dedent(
        f"""
        import re
        re.fullmatch({pattern!r}, {LONG_A_ROLE!r})
        """
    )
    # The comparison: Python's backtracking engine does not finish within the probe's budget.
    with pytest.raises(subprocess.TimeoutExpired):
        subprocess.run([sys.executable, "-c", probe], timeout=PYTHON_RE_PROBE_SECONDS, check=False)
    # sidecred, with RE2, decides the same input (the bound is this test's timeout).
    decision = decide(LONG_A_ROLE, {PERMITTED_KEY: pattern})
    assert decision.allowed is False
    assert decision.reason == "not-permitted"


@pytest.mark.timeout(20)
@pytest.mark.parametrize("name", sorted(CATASTROPHIC))
def test_catastrophic_patterns_repeated_across_many_admissions(name: str) -> None:
    for index in range(200):
        role = BASE_ROLE_ARN + "a" * (index % 63 + 1) + "-"
        assert decide(role, {PERMITTED_KEY: CATASTROPHIC[name]}).allowed is False


@pytest.mark.timeout(20)
@pytest.mark.parametrize(
    ("role", "policy", "fragment"),
    [
        pytest.param(
            "shop-reader",
            {PERMITTED_KEY: "a" * (1024 * 1024)},
            "iam.amazonaws.com/permitted is 1048576 characters; the limit is",
            id="one-mebibyte-regex",
        ),
        pytest.param(
            "role-5",
            {ALLOWED_ROLES_KEY: json.dumps([f"role-{i}" for i in range(100_000)])},
            "iam.amazonaws.com/allowed-roles is",
            id="hundred-thousand-allowed-roles",
        ),
    ],
)
def test_an_oversized_policy_is_refused_as_a_bad_policy(
    role: str, policy: dict[str, str], fragment: str
) -> None:
    decision = decide(role, policy)
    assert not decision.allowed and decision.reason == "bad-policy"
    assert fragment in decision.message
    assert len(decision.message) < 500


@pytest.mark.timeout(20)
def test_regex_that_exceeds_re2_memory_is_refused_as_a_bad_policy() -> None:
    # Small text, huge program: RE2's memory cap refuses it instead of growing without bound.
    pattern = "((((a{100}){100}){100}){100})"
    decision = decide("shop-reader", {PERMITTED_KEY: pattern})
    assert not decision.allowed and decision.reason == "bad-policy"
    assert "not a valid RE2 expression" in decision.message


@pytest.mark.timeout(20)
def test_the_largest_accepted_allowed_roles_list_still_decides() -> None:
    roles = [f"r{i}" for i in range(1000)]
    raw = json.dumps(roles)
    assert len(raw) < 16 * 1024
    assert decide("r999", {ALLOWED_ROLES_KEY: raw}).allowed is True
    assert decide("r1000", {ALLOWED_ROLES_KEY: raw}).allowed is False


@pytest.mark.timeout(20)
def test_deeply_nested_allowed_roles_json_is_a_bad_policy() -> None:
    decision = decide("shop-reader", {ALLOWED_ROLES_KEY: "[" * 10_000 + "]" * 10_000})
    assert not decision.allowed and decision.reason == "bad-policy"


@pytest.mark.parametrize(
    "annotations",
    [{PERMITTED_KEY: "shop-\ud800"}, {ALLOWED_ROLES_KEY: '["shop-\\ud800"]'}],
    ids=["permitted", "allowed-roles"],
)
def test_lone_surrogate_in_a_policy_is_a_bad_policy_not_a_crash(
    annotations: dict[str, str],
) -> None:
    # Found by fuzzing: RE2 takes UTF-8 and a lone surrogate has none, so compiling raised
    # UnicodeEncodeError and the admission failed as an internal error.
    result = evaluate_policy(BASE_ROLE_ARN + "shop-reader", "shop", annotations, BASE_ROLE_ARN)
    assert result.permitted is False and result.reason == "bad-policy"
    assert "\\ud800" in result.message  # named, escaped, in the message


def review_body(**request_overrides: Any) -> bytes:
    request = dict(admission_request(pod_for("shop-reader")), **request_overrides)
    return json.dumps(
        {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}
    ).encode()


@pytest.mark.parametrize(
    "body",
    [
        review_body().replace(b"shop-reader", b"shop-\xff\xfereader"),
        review_body().replace(
            b"shop-reader", b"shop-\xed\xa0\x80reader"
        ),  # UTF-8-encoded surrogate
        b"\xef\xbb\xbf" + review_body(),  # a byte-order mark
        review_body()[:-1] + b"\x80}",
    ],
    ids=["invalid-bytes", "encoded-surrogate", "bom", "trailing-junk"],
)
def test_invalid_utf8_body_is_a_400(body: bytes) -> None:
    with pytest.raises(ReviewError) as caught:
        parse_review(body)
    assert caught.value.status_code == 400
