"""Session names always start with the pod's own namespace, and the webhook, the broker
and the sidecar build the same one from the same annotation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sidecred.pods.annotations import SESSION_NAME_RE
from sidecred.pods.refusal import Refusal
from sidecred.pods.session import custom_session_name
from sidecred.sidecar.session_name import build_session_name

LABEL = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", fullmatch=True)
SESSION = st.from_regex(SESSION_NAME_RE, fullmatch=True)


def test_short_names_are_prefixed() -> None:
    assert custom_session_name("shop", "prod.payments-api-0") == "shop.prod.payments-api-0"


def test_long_names_keep_the_prefix_and_stay_distinct() -> None:
    one = custom_session_name("shop", "a" * 60 + "x")
    two = custom_session_name("shop", "a" * 60 + "y")
    for name in (one, two):
        assert name.startswith("shop.") and len(name) == 64 and SESSION_NAME_RE.fullmatch(name)
    assert one != two


def test_a_namespace_too_long_to_prefix_is_refused() -> None:
    with pytest.raises(Refusal) as info:
        custom_session_name("n" * 60, "worker")
    assert info.value.reason == "bad-annotation"
    assert "too long" in info.value.message


@given(LABEL, LABEL, SESSION)
def test_the_sidecar_keeps_the_name_the_webhook_wrote(namespace: str, pod: str, value: str) -> None:
    """The webhook writes custom_session_name into the sidecar's env; the sidecar builds
    its session name from that env and gets the same name, whole or cut."""
    try:
        written = custom_session_name(namespace, value)
    except Refusal:
        return
    assert written.startswith(namespace + ".") and SESSION_NAME_RE.fullmatch(written)
    assert build_session_name(namespace, pod, written) == written
