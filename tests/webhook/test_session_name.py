"""Session names always start with the pod's own namespace (DESIGN 3.1)."""

from __future__ import annotations

import pytest

from sidecred.pods.annotations import SESSION_NAME_RE
from sidecred.pods.session import namespaced_session_name
from sidecred.pods.refusal import Refusal


def test_short_names_are_prefixed() -> None:
    assert namespaced_session_name("shop", "prod.payments-api-0") == "shop.prod.payments-api-0"


def test_long_names_keep_the_prefix_and_stay_distinct() -> None:
    one = namespaced_session_name("shop", "a" * 60 + "x")
    two = namespaced_session_name("shop", "a" * 60 + "y")
    for name in (one, two):
        assert name.startswith("shop.") and len(name) == 64 and SESSION_NAME_RE.fullmatch(name)
    assert one != two


def test_a_namespace_too_long_to_prefix_is_refused() -> None:
    with pytest.raises(Refusal) as info:
        namespaced_session_name("n" * 60, "worker")
    assert info.value.reason == "bad-annotation"
    assert "too long" in info.value.message
