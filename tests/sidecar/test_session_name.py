"""Session names: `<namespace>.<pod>`, STS-safe, at most 64 characters."""

from __future__ import annotations

import re

import pytest

from sidecred.sidecar.session_name import build_session_name

STS_PATTERN = re.compile(r"[A-Za-z0-9_+=,.@-]{2,64}")


@pytest.mark.parametrize(
    ("namespace", "pod", "override", "expected"),
    [
        ("shop", "web-1", None, "shop.web-1"),
        ("shop", "web-1", "custom@name", "shop.custom@name"),
        ("shop", "web-1", "shop.custom", "shop.custom"),
        ("shop", "web-1", "prod.payments-api-0", "shop.prod.payments-api-0"),
        ("shop", "wéb 1/x", None, "shop.w-b-1-x"),
        ("a", "", None, "a."),
        ("", "", "x", ".x"),
    ],
)
def test_session_names(namespace, pod, override, expected):
    assert build_session_name(namespace, pod, override) == expected


def test_long_name_is_truncated_with_a_hash():
    pod = "web-" + "x" * 80
    name = build_session_name("shop", pod)
    assert len(name) == 64
    assert STS_PATTERN.fullmatch(name)
    assert name.startswith("shop.web-xxx")
    assert re.search(r"-[0-9a-f]{8}$", name)


def test_long_names_sharing_a_prefix_stay_distinct():
    a = build_session_name("shop", "p" * 70 + "-a")
    b = build_session_name("shop", "p" * 70 + "-b")
    assert a != b and len(a) == len(b) == 64


def test_exactly_64_is_kept():
    pod = "p" * (64 - len("shop."))
    assert build_session_name("shop", pod) == "shop." + pod


@pytest.mark.parametrize("raw", ["ns.ünïcødé-" * 10, "a b\tc\nd", "\x00" * 70, "😀" * 40])
def test_odd_input_always_yields_a_valid_name(raw):
    assert STS_PATTERN.fullmatch(build_session_name("ns", raw))
