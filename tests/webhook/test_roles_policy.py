"""Tables for role resolution and namespace policy edge cases."""

from __future__ import annotations

import json

import pytest

from sidecred.pods.policy import ALLOWED_ROLES_KEY, PERMITTED_KEY, evaluate_policy, glob_to_re2
from sidecred.pods.roles import RoleError, resolve_role

BASE = "arn:aws:iam::111122223333:role/"


@pytest.mark.parametrize(
    ("value", "base", "expected"),
    [
        ("reader", BASE, BASE + "reader"),
        ("team/reader", BASE, BASE + "team/reader"),
        ("a/b/c+=,.@_-d", BASE, BASE + "a/b/c+=,.@_-d"),
        ("reader", "arn:aws:iam::111122223333:role/platform/", BASE + "platform/reader"),
        ("arn:aws:iam::444455556666:role/cross", BASE, "arn:aws:iam::444455556666:role/cross"),
        (
            "arn:aws-us-gov:iam::111122223333:role/gov",
            None,
            "arn:aws-us-gov:iam::111122223333:role/gov",
        ),
        (
            "arn:aws-cn:iam::111122223333:role/p/q/r",
            None,
            "arn:aws-cn:iam::111122223333:role/p/q/r",
        ),
    ],
)
def test_resolve_role(value: str, base: str | None, expected: str) -> None:
    assert resolve_role(value, base) == expected


@pytest.mark.parametrize(
    ("value", "base", "fragment"),
    [
        ("", BASE, "is empty"),
        (" reader", BASE, "whitespace"),
        ("reader\n", BASE, "whitespace"),
        ("rea\x00der", BASE, "control"),
        ("reader", None, "no --base-role-arn"),
        ("a" * 65, BASE, "is not a role name"),
        ("shop-*", BASE, "is not a role name"),
        ("/reader", BASE, "is not a role name"),
        ("team//reader", BASE, "is not a role name"),
        ("arn:aws:iam::11112222333:role/x", BASE, "is not an IAM role ARN"),
        ("arn:aws:iam::111122223333:user/x", BASE, "is not an IAM role ARN"),
        ("arn:aws:sts::111122223333:assumed-role/x/y", BASE, "is not an IAM role ARN"),
        ("arn:aws:iam::111122223333:role/", BASE, "is not an IAM role ARN"),
        ("arn:aws:iam:us-east-1:111122223333:role/x", BASE, "is not an IAM role ARN"),
    ],
)
def test_resolve_role_refuses(value: str, base: str | None, fragment: str) -> None:
    with pytest.raises(RoleError, match=None) as info:
        resolve_role(value, base)
    assert fragment in str(info.value)
    assert "iam.amazonaws.com/role" in str(info.value)


@pytest.mark.parametrize(
    ("glob", "role", "matches"),
    [
        ("shop-*", "shop-reader", True),
        ("shop-*", "shop-", True),
        ("shop-*", "team/shop-reader", False),
        ("shop-*", "shop-x/admin", False),
        ("*/reader", "team/reader", True),
        ("*/reader", "a/b/reader", False),
        ("shop.reader", "shopXreader", False),  # "." is literal, not a regex dot
        ("shop+reader", "shop+reader", True),
        ("*", "anything", True),
        ("*", "path/anything", False),
    ],
)
def test_allowed_roles_glob(glob: str, role: str, matches: bool) -> None:
    annotations = {ALLOWED_ROLES_KEY: json.dumps([glob])}
    result = evaluate_policy(BASE + role, "ns", annotations, BASE)
    assert result.permitted is matches, result
    assert glob_to_re2(glob).count("[^/]*") == glob.count("*")


@pytest.mark.parametrize(
    ("annotations", "role", "reason"),
    [
        ({PERMITTED_KEY: BASE + "shop-.*"}, "shop-reader", "permitted"),
        ({PERMITTED_KEY: "shop-.*"}, "shop-reader", "not-permitted"),  # full match only
        ({PERMITTED_KEY: BASE + "shop-.*"}, "evil-shop-x", "not-permitted"),
        ({PERMITTED_KEY: ".*:role/shop-.*"}, "shop-a", "permitted"),
        ({PERMITTED_KEY: ""}, "shop-a", "not-permitted"),
        ({PERMITTED_KEY: "^" + BASE + "shop-a$"}, "shop-a", "permitted"),
        # Either annotation permits.
        ({PERMITTED_KEY: BASE + "x", ALLOWED_ROLES_KEY: '["shop-a"]'}, "shop-a", "permitted"),
        ({PERMITTED_KEY: BASE + "shop-a", ALLOWED_ROLES_KEY: '["x"]'}, "shop-a", "permitted"),
        ({ALLOWED_ROLES_KEY: "[]"}, "shop-a", "not-permitted"),
        ({ALLOWED_ROLES_KEY: f'["{BASE}shop-*"]'}, "shop-a", "permitted"),
        ({}, "shop-a", "no-policy"),
        ({"other": "x"}, "shop-a", "no-policy"),
        # Unparsable annotations deny, even when the other one would permit.
        ({PERMITTED_KEY: "(", ALLOWED_ROLES_KEY: '["shop-a"]'}, "shop-a", "bad-policy"),
        ({PERMITTED_KEY: "(?=x)"}, "shop-a", "bad-policy"),  # lookahead is not RE2
        ({PERMITTED_KEY: "a{1001}"}, "shop-a", "bad-policy"),
        ({ALLOWED_ROLES_KEY: '"shop-a"'}, "shop-a", "bad-policy"),
        ({ALLOWED_ROLES_KEY: "[1, 2]"}, "shop-a", "bad-policy"),
        ({ALLOWED_ROLES_KEY: '["shop a"]'}, "shop-a", "bad-policy"),
        ({ALLOWED_ROLES_KEY: "["}, "shop-a", "bad-policy"),
    ],
)
def test_evaluate_policy(annotations: dict[str, str], role: str, reason: str) -> None:
    result = evaluate_policy(BASE + role, "shop", annotations, BASE)
    assert result.reason == reason, result.message
    assert result.permitted is (reason == "permitted")
    if not result.permitted:
        assert 'namespace "shop"' in result.message


def test_allowed_roles_names_need_base_arn() -> None:
    result = evaluate_policy(BASE + "a", "shop", {ALLOWED_ROLES_KEY: '["a"]'}, None)
    assert result.reason == "bad-policy"
    assert "no --base-role-arn" in result.message


def test_hostile_policies_are_decided() -> None:
    """Catastrophic-backtracking shapes and oversized annotations get a decision, not a stall."""
    role = BASE + "a" * 64
    # Exponential for a backtracking engine on this input; linear for RE2.
    redos = {PERMITTED_KEY: ".*(a+)+b" + "|.*(a|aa)*c" * 50}
    assert evaluate_policy(role, "ns", redos, BASE).reason == "not-permitted"
    huge = {PERMITTED_KEY: "a" * 20000}
    result = evaluate_policy(role, "ns", huge, BASE)
    assert result.reason == "bad-policy" and "limit" in result.message
    assert len(result.message) < 600  # the value is cut in the message
    many = {ALLOWED_ROLES_KEY: json.dumps([f"r{i}" for i in range(1001)])}
    assert evaluate_policy(role, "ns", many, BASE).reason == "bad-policy"
    big_program = {PERMITTED_KEY: "((((((a{100}){100}){100}){100})))"}
    assert evaluate_policy(role, "ns", big_program, BASE).reason == "bad-policy"
