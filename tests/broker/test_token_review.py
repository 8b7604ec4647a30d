"""The TokenReview for a pod the cache does not hold: its answers, its cache, forgetting a pod."""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from sidecred.broker.authorise import Caller
from sidecred.broker.identity import bearer_token
from sidecred.broker.jwt_verify import Verified, parse_token
from sidecred.broker.token_review import EXPIRY_MARGIN_SECONDS, TokenReviewer, caller_from_review
from sidecred.dev.kube_stub import KubeApiStub, StubRequest, StubResponse
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
    ],
)
def test_bad_authorization_headers_are_401(header: str | None, code: str) -> None:
    refusal = bearer_token(header)
    assert isinstance(refusal, Refusal) and (refusal.status, refusal.reason) == (401, code)


def test_a_bearer_token_is_passed_on_to_verification() -> None:
    assert bearer_token("Bearer aaa.bbb.ccc") == "aaa.bbb.ccc"
    assert bearer_token("bearer  aaa.bbb.ccc ") == "aaa.bbb.ccc"
    assert bearer_token("Bearer not-a-jwt") == "not-a-jwt"  # refused by verification


def verified(token: str) -> Verified:
    """What local verification would say of one of the stub's tokens (its claims, unchecked)."""
    parsed = parse_token(token)
    assert not isinstance(parsed, Refusal)
    bound = parsed.claims["kubernetes.io"]
    account = parsed.claims["sub"].rsplit(":", 1)[1]
    caller = Caller(bound["namespace"], account, bound["pod"]["name"], bound["pod"]["uid"])
    return Verified(caller, float(parsed.claims["exp"]))


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
    claims = verified(token)
    clock = Clock(claims.expires_at - 3600)
    reviewer = TokenReviewer(api_client(stub), AUDIENCE, clock=clock)
    expected = Caller("shop", "web", "web-1", pod["metadata"]["uid"])
    assert reviewer.review(token, claims) == expected
    assert reviewer.review(token, claims) == expected
    assert stub.requests["tokenreviews.create"] == 1
    # Shortly before the token expires the answer is no longer reused.
    clock.now = claims.expires_at - EXPIRY_MARGIN_SECONDS
    assert reviewer.review(token, claims) == expected
    assert stub.requests["tokenreviews.create"] == 2


def test_forgetting_a_pod_drops_its_reviews_and_no_other(
    stub: KubeApiStub, authority: TokenAuthority
) -> None:
    first = stub.put("pods", broker_pod("web-1"))
    second = stub.put("pods", broker_pod("web-2"))
    tokens = [authority.pod_token(first), authority.pod_token(first), authority.pod_token(second)]
    reviewer = TokenReviewer(api_client(stub), AUDIENCE)
    for token in tokens:
        assert isinstance(reviewer.review(token, verified(token)), Caller)
    assert reviewer.forget(first["metadata"]["uid"]) == 2
    assert isinstance(reviewer.review(tokens[2], verified(tokens[2])), Caller)  # still cached
    assert stub.requests["tokenreviews.create"] == 3
    stub.delete("pods", "web-1", "shop")
    refusal = reviewer.review(tokens[0], verified(tokens[0]))  # asked again: the pod is gone
    assert isinstance(refusal, Refusal) and "invalidated" in refusal.message
    assert stub.requests["tokenreviews.create"] == 4


def test_one_review_for_concurrent_requests_and_none_kept_for_a_pod_forgotten_meanwhile(
    stub: KubeApiStub, authority: TokenAuthority
) -> None:
    """Requests with one token share a review; if the pod is forgotten while it runs,
    its answer is given to them but not remembered."""
    pod = stub.put("pods", broker_pod())
    token = authority.pod_token(pod)
    entered, release = threading.Event(), threading.Event()

    def held_review(request: StubRequest) -> StubResponse:
        entered.set()
        release.wait(10)
        return authority.handle(request)

    stub._routes.insert(0, ("POST", stub._routes[0][1], "held", held_review))
    reviewer = TokenReviewer(api_client(stub), AUDIENCE)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = [pool.submit(reviewer.review, token, verified(token)) for _ in range(8)]
        assert entered.wait(10)
        reviewer.forget(pod["metadata"]["uid"])
        release.set()
        results = [answer.result(timeout=20) for answer in answers]
    assert {type(result) for result in results} == {Caller}
    assert stub.requests["held"] == 1
    assert isinstance(reviewer.review(token, verified(token)), Caller)  # not kept: asked again
    assert stub.requests["held"] == 2


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
    refusal = TokenReviewer(api_client(stub), AUDIENCE).review(token, verified(token))
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
    assert isinstance(reviewer.review(known, verified(known)), Caller)
    stub.stop()
    assert isinstance(reviewer.review(known, verified(known)), Caller)
    refusal = reviewer.review(unknown, verified(unknown))
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
    caller = TokenReviewer(api_client(stub), AUDIENCE).review(token, verified(token))
    assert caller == Caller("shop", "web", "web-1", pod["metadata"]["uid"])
