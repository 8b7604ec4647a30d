"""Who is calling: bearer parsing, TokenReview answers, and the review cache against the stub."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from sidecred.broker.authorise import Caller
from sidecred.broker.token_review import (
    EXPIRY_MARGIN_SECONDS,
    TokenReviewer,
    bearer_token,
    caller_from_review,
    token_expiry,
)
from sidecred.dev.kube_stub import KubeApiStub
from sidecred.dev.local_pod import LocalPod
from sidecred.dev.token_review import TokenAuthority
from sidecred.pods.refusal import Refusal

from .pods import broker_pod

AUDIENCE = "sidecred-broker"


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def stub() -> Iterator[KubeApiStub]:
    api = KubeApiStub()
    api.start()
    yield api
    api.stop()


@pytest.fixture
def authority(stub: KubeApiStub) -> TokenAuthority:
    return TokenAuthority(stub)


def api_client(stub: KubeApiStub) -> client.ApiClient:
    return client.ApiClient(client.Configuration(host=stub.url))


@pytest.mark.parametrize(
    ("header", "code"),
    [
        (None, "MissingToken"),
        ("", "MissingToken"),
        ("Basic dXNlcjpwYXNz", "MissingToken"),
        ("Bearer ", "MissingToken"),
        ("Bearer not-a-jwt", "InvalidToken"),
        ("Bearer a.b", "InvalidToken"),
        ("Bearer a.b.c/d", "InvalidToken"),
        ("Bearer " + "a." * 10_000 + "b", "InvalidToken"),
    ],
)
def test_bad_authorization_headers_are_401_without_a_review(header: str | None, code: str) -> None:
    refusal = bearer_token(header)
    assert isinstance(refusal, Refusal) and (refusal.status, refusal.reason) == (401, code)


def test_a_jwt_shaped_bearer_token_is_passed_on() -> None:
    assert bearer_token("Bearer aaa.bbb.ccc") == "aaa.bbb.ccc"
    assert bearer_token("bearer  aaa.bbb.ccc ") == "aaa.bbb.ccc"


def test_expiry_is_read_from_the_payload_without_verifying(authority: TokenAuthority) -> None:
    clock_token = authority.issue("shop", "web", "web-1", "u", expires_in=600)
    exp = token_expiry(clock_token)
    assert exp is not None and exp > 0
    assert token_expiry("aaa.bbb.ccc") is None
    assert token_expiry("aaa.eyJleHAiOiAieCJ9.ccc") is None  # {"exp": "x"}


def _review(status: dict) -> dict:
    return {"kind": "TokenReview", "status": status}


USER = {
    "username": "system:serviceaccount:shop:web",
    "extra": {
        "authentication.kubernetes.io/pod-name": ["web-1"],
        "authentication.kubernetes.io/pod-uid": ["uid-1"],
    },
}


@pytest.mark.parametrize(
    ("status", "code"),
    [
        ({"authenticated": False, "error": "token has expired"}, "InvalidToken"),
        ({}, "InvalidToken"),
        ({"authenticated": True, "user": USER, "audiences": ["other"]}, "WrongAudience"),
        ({"authenticated": True, "user": USER}, "WrongAudience"),
        (
            {"authenticated": True, "user": {"username": "alice"}, "audiences": [AUDIENCE]},
            "NotAServiceAccount",
        ),
        (
            {
                "authenticated": True,
                "user": {"username": "system:serviceaccount:shop:web"},
                "audiences": [AUDIENCE],
            },
            "TokenNotBoundToPod",
        ),
    ],
)
def test_review_answers_that_name_no_pod_are_401(status: dict, code: str) -> None:
    refusal = caller_from_review(_review(status), AUDIENCE)
    assert isinstance(refusal, Refusal) and (refusal.status, refusal.reason) == (401, code)


def test_an_authenticated_review_names_the_pod() -> None:
    status = {"authenticated": True, "user": USER, "audiences": [AUDIENCE]}
    assert caller_from_review(_review(status), AUDIENCE) == Caller("shop", "web", "web-1", "uid-1")


def test_stub_reviews_with_the_real_client_and_the_answer_is_cached(
    stub: KubeApiStub, authority: TokenAuthority
) -> None:
    pod = stub.put("pods", broker_pod())
    token = authority.pod_token(pod)
    clock = Clock(token_expiry(token) - 3600)
    reviewer = TokenReviewer(api_client(stub), AUDIENCE, clock=clock)
    expected = Caller("shop", "web", "web-1", pod["metadata"]["uid"])
    assert reviewer.review(token) == expected
    assert reviewer.review(token) == expected
    assert stub.requests["tokenreviews.create"] == 1
    # Shortly before the token expires the answer is no longer reused.
    clock.now = token_expiry(token) - EXPIRY_MARGIN_SECONDS
    assert reviewer.review(token) == expected
    assert stub.requests["tokenreviews.create"] == 2


@pytest.mark.parametrize("case", ["expired", "audience", "forged", "pod-deleted"])
def test_stub_refuses_tokens_as_the_api_server_does(
    stub: KubeApiStub, authority: TokenAuthority, case: str
) -> None:
    pod = stub.put("pods", broker_pod())
    if case == "expired":
        token = authority.pod_token(pod, expires_in=-1)
    elif case == "audience":
        token = authority.pod_token(pod, audiences=["sts.amazonaws.com"])
    elif case == "forged":
        token = TokenAuthority(KubeApiStub()).pod_token(pod)  # another issuer's key
    else:
        token = authority.pod_token(pod)
        stub.delete("pods", "web-1", "shop")
    refusal = TokenReviewer(api_client(stub), AUDIENCE).review(token)
    assert isinstance(refusal, Refusal) and refusal.status == 401
    words = {
        "expired": "has expired",
        "audience": "invalid for the target audiences",
        "forged": "could not be verified",
        "pod-deleted": "invalidated",
    }
    assert words[case] in refusal.message


def test_an_unreachable_api_server_is_503_but_cached_answers_still_work(
    stub: KubeApiStub, authority: TokenAuthority
) -> None:
    pod = stub.put("pods", broker_pod())
    known, unknown = authority.pod_token(pod), authority.pod_token(pod, expires_in=7200)
    reviewer = TokenReviewer(api_client(stub), AUDIENCE)
    assert isinstance(reviewer.review(known), Caller)
    stub.stop()
    assert isinstance(reviewer.review(known), Caller)
    refusal = reviewer.review(unknown)
    assert isinstance(refusal, Refusal)
    assert (refusal.status, refusal.reason) == (503, "KubernetesUnavailable")
    assert "unreachable" in refusal.message


def test_a_local_pod_gets_tokens_the_stub_accepts(
    stub: KubeApiStub, authority: TokenAuthority, tmp_path: Path
) -> None:
    """The local kubelet mints the projected token with the authority's key."""
    pod = stub.put("pods", broker_pod())  # admitted in broker mode: a broker-audience volume
    local = LocalPod(pod, token_issuer=authority.local_pod_token, workdir=tmp_path)
    local.prepare()
    [token_file] = [p for p in local.volumes["sidecred-sa-token"].rglob("*") if p.is_file()]
    token = token_file.read_text()
    caller = TokenReviewer(api_client(stub), AUDIENCE).review(token)
    assert caller == Caller("shop", "web", "web-1", pod["metadata"]["uid"])
