"""The cluster's signing keys, fetched from the API stub with the real client, and refetched sparingly."""

from __future__ import annotations

import concurrent.futures
import uuid
from collections.abc import Iterator

import pytest
from kubernetes import client

from sidecred.broker.authorise import Caller
from sidecred.broker.cluster_keys import UNKNOWN_KEY_REFETCH_SECONDS, ClusterKeys
from sidecred.broker.jwt_verify import UNKNOWN_KEY, Verified
from sidecred.dev.kube_stub import (
    KubeApiStub,
    StubRequest,
    StubResponse,
    json_response,
    status_object,
)
from sidecred.dev.processes import wait_until
from sidecred.dev.token_review import TokenAuthority
from sidecred.pods.refusal import Refusal
from tests.support.clock import Clock

AUDIENCE = "sidecred-broker"
FETCHES = ("openid.configuration", "openid.jwks")


@pytest.fixture
def stub() -> Iterator[KubeApiStub]:
    with KubeApiStub() as api:
        yield api


@pytest.fixture
def authority(stub: KubeApiStub) -> TokenAuthority:
    return TokenAuthority(stub)


Fetches = list[tuple[str, str]]


@pytest.fixture
def clock() -> Clock:
    return Clock(1000.0)


@pytest.fixture
def fetched() -> Fetches:
    """(reason, result) of each fetch the keys make, in order."""
    return []


@pytest.fixture
def keys(stub: KubeApiStub, clock: Clock, fetched: Fetches) -> ClusterKeys:
    """Keys read from the stub on the test's clock: not started, nothing fetched yet."""
    api = client.ApiClient(client.Configuration(host=stub.url))
    return ClusterKeys(
        api, AUDIENCE, clock=clock, record=lambda reason, result: fetched.append((reason, result))
    )


def token(authority: TokenAuthority, **kwargs: str) -> str:
    return authority.issue("shop", "web", "web-1", "uid-1", **kwargs)  # type: ignore[arg-type]


def test_before_the_first_fetch_a_good_token_is_503_and_junk_still_401(
    keys: ClusterKeys, stub: KubeApiStub, authority: TokenAuthority
) -> None:
    waiting = keys.verify(token(authority))
    assert isinstance(waiting, Refusal) and waiting.status == 503
    assert "not loaded yet" in waiting.message
    junk = keys.verify("a.b")
    assert isinstance(junk, Refusal) and junk.status == 401
    assert sum(stub.requests[name] for name in FETCHES) == 0


def test_the_started_keys_verify_the_issuers_tokens(
    keys: ClusterKeys, fetched: Fetches, authority: TokenAuthority
) -> None:
    keys.start()
    try:
        wait_until(lambda: keys.synced, what="the first fetch")
    finally:
        keys.stop()
    assert fetched == [("start", "ok")]
    result = keys.verify(token(authority))
    assert isinstance(result, Verified) and result.caller == Caller("shop", "web", "web-1", "uid-1")


def test_invented_key_ids_cost_one_fetch_per_thirty_seconds(
    keys: ClusterKeys, clock: Clock, fetched: Fetches, stub: KubeApiStub, authority: TokenAuthority
) -> None:
    assert keys._fetch("start") is not None
    for _ in range(200):
        refused = keys.verify(token(authority, kid=str(uuid.uuid4())))
        assert isinstance(refused, Refusal) and refused.reason == UNKNOWN_KEY
    assert fetched == [("start", "ok"), ("unknown-kid", "ok")]
    clock.now += UNKNOWN_KEY_REFETCH_SECONDS - 1
    keys.verify(token(authority, kid="still-unknown"))
    assert len(fetched) == 2
    clock.now += 1
    keys.verify(token(authority, kid="still-unknown"))
    assert fetched[-1] == ("unknown-kid", "ok") and len(fetched) == 3
    assert stub.requests["openid.jwks"] == 3


def test_a_rotation_costs_one_fetch_however_many_callers_carry_the_new_key(
    keys: ClusterKeys, fetched: Fetches, authority: TokenAuthority
) -> None:
    assert keys._fetch("start") is not None
    old = token(authority)
    authority.rotate("ES256")
    new = [token(authority) for _ in range(40)]
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        results = list(pool.map(keys.verify, new))
    assert all(isinstance(result, Verified) for result in results), results
    assert isinstance(keys.verify(old), Verified)  # the old key is still published
    assert fetched == [("start", "ok"), ("unknown-kid", "ok")]


def test_a_retired_key_stops_verifying_at_the_next_refresh(
    keys: ClusterKeys, authority: TokenAuthority
) -> None:
    assert keys._fetch("start") is not None
    old_kid, old = authority.kid, token(authority)
    authority.rotate()
    authority.retire(old_kid)
    assert isinstance(keys.verify(old), Verified)  # until the set is fetched again
    assert keys._fetch("refresh") is not None
    refused = keys.verify(old)
    assert isinstance(refused, Refusal) and refused.reason == UNKNOWN_KEY


def test_a_failed_fetch_keeps_the_keys_and_says_why(
    keys: ClusterKeys, fetched: Fetches, stub: KubeApiStub, authority: TokenAuthority
) -> None:
    assert keys._fetch("start") is not None
    stub.stop()
    assert keys._fetch("refresh") is None
    assert "unreachable" in keys.last_error
    assert isinstance(keys.verify(token(authority)), Verified)
    assert fetched == [("start", "ok"), ("refresh", "error")]


def test_forbidden_discovery_is_reported_for_readiness(
    keys: ClusterKeys, fetched: Fetches, stub: KubeApiStub
) -> None:
    """Without the issuer-discovery RBAC the API server answers 403; /readyz says so."""

    def forbidden(request: StubRequest) -> StubResponse:
        message = 'forbidden: User "system:serviceaccount:sidecred:sidecred-broker" cannot get path'
        return json_response(403, status_object(403, "Forbidden", message))

    stub.route("GET", r"/\.well-known/openid-configuration", forbidden, "forbidden")
    assert keys._fetch("start") is None
    assert not keys.synced
    assert "HTTP 403" in keys.last_error
    assert fetched == [("start", "403")]
