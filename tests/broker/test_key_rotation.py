"""The API server rotates its signing key under the real broker: one JWKS fetch, no refusals.

A module of its own, so its broker has not spent its one unknown-kid refetch per 30 s on
another module's junk tokens.
"""

from __future__ import annotations

import concurrent.futures

from .broker_process import SNI
from .conftest import Cluster


def test_a_new_signing_key_costs_one_fetch_and_old_tokens_stay_valid(cluster: Cluster) -> None:
    pods = [cluster.add_pod("rotation")[0] for _ in range(10)]
    old_tokens = [cluster.authority.pod_token(pod) for pod in pods]
    with cluster.broker.client() as http:

        def issue(token: str) -> int:
            headers = {"Authorization": f"Bearer {token}"}
            return http.post("/v1/credentials", headers=headers, extensions=SNI).status_code

        assert [issue(token) for token in old_tokens] == [200] * 10
        fetches = cluster.stub.requests["openid.jwks"]
        old_kid = cluster.authority.kid
        assert cluster.authority.rotate("ES256") != old_kid  # new tokens carry the new key
        new_tokens = [cluster.authority.pod_token(pod) for pod in pods for _ in range(4)]
        with concurrent.futures.ThreadPoolExecutor(20) as pool:
            statuses = list(pool.map(issue, new_tokens))
        assert statuses == [200] * len(new_tokens)
        assert [issue(token) for token in old_tokens] == [200] * 10  # not yet expired
    assert cluster.stub.requests["openid.jwks"] - fetches == 1
    refusals = cluster.broker.metric(
        "sidecred_broker_token_verifications_total", result="UnknownSigningKey"
    )
    assert refusals == 0
