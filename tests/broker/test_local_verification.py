"""The real broker over TLS verifies tokens itself: junk and forgeries cost the API server
nothing, rotated tokens cost almost no reviews, and a pod that hid from the watch does not
outlive its deletion."""

from __future__ import annotations

import base64
import json
import random
import string
from typing import Any

import httpx

from sidecred.dev.kube_stub import KubeApiStub
from sidecred.dev.processes import wait_until
from sidecred.dev.token_review import TokenAuthority

from .broker_process import SNI
from .conftest import Cluster

REVIEWS = "tokenreviews.create"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt_of(header: Any, payload: Any, signature: bytes = b"sig") -> str:
    return ".".join(
        (b64(json.dumps(header).encode()), b64(json.dumps(payload).encode()), b64(signature))
    )


def junk_tokens(rng: random.Random, cluster: Cluster, pod: dict[str, Any]) -> list[str]:
    """1,100 distinct tokens of every shape the issue names, none signed by the cluster."""
    alphabet = string.ascii_letters + string.digits + "-_."
    good = cluster.authority.pod_token(pod)
    head, body, _ = good.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=="))
    tokens = [
        # alg none and HS256 over random payloads and over the real claims
        *(jwt_of({"alg": "none"}, {"exp": rng.randrange(10**10), "s": i}, b"") for i in range(150)),
        *(
            jwt_of({"alg": "HS256", "kid": cluster.authority.kid}, {**claims, "i": i})
            for i in range(150)
        ),
        # random text, JWT-shaped or not
        *("".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 600))) for _ in range(200)),
        # not base64, not JSON, not an object
        *(f"{'!' * (i + 1)}.{body}.sig" for i in range(100)),
        *(f"{b64(bytes([0xFF, i]))}.{body}.sig" for i in range(100)),
        *(f"{head}.{b64(str(i).encode())}.sig" for i in range(100)),
        # huge, though still within the 16 KiB request head the server reads
        *(f"{head}.{'a' * (8 * 1024 + 100 * i)}.sig" for i in range(1, 51)),
        # a key id the cluster never had
        *(jwt_of({"alg": "RS256", "kid": f"kid-{i}"}, claims) for i in range(200)),
        # the real header and claims with a signature that is not the issuer's
        *(f"{head}.{body}.{b64(rng.randbytes(256))}" for _ in range(50)),
    ]
    assert len(set(tokens)) == len(tokens) == 1100
    return tokens


def forged_tokens(cluster: Cluster, pod: dict[str, Any]) -> list[str]:
    """200 tokens with the claims the kubelet would get for a live pod, signed with another key:
    half naming the cluster's key id, half the forger's own."""
    forger = TokenAuthority(KubeApiStub())
    same_kid = [forger.pod_token(pod, kid=cluster.authority.kid) for _ in range(100)]
    own_kid = [forger.pod_token(pod) for _ in range(100)]
    return same_kid + own_kid


def post(http: httpx.Client, token: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"}
    return http.post("/v1/credentials", headers=headers, extensions=SNI)


def test_junk_and_forged_tokens_are_401_and_cost_no_reviews(cluster: Cluster) -> None:
    pod, token = cluster.add_pod("live")
    assert cluster.broker.issue(token).status_code == 200  # the pod is live and served
    reviews, jwks = cluster.stub.requests[REVIEWS], cluster.stub.requests["openid.jwks"]
    junk = junk_tokens(random.Random(19), cluster, pod)
    forged = forged_tokens(cluster, pod)
    codes: dict[str, int] = {}
    with cluster.broker.client() as http:
        for bad in junk + forged:
            response = post(http, bad)
            assert response.status_code == 401, (bad[:80], response.text)
            body = response.json()
            assert bad not in response.text and body["message"].startswith("sidecred broker:")
            codes[body["code"]] = codes.get(body["code"], 0) + 1
    assert cluster.stub.requests[REVIEWS] - reviews <= 10
    assert cluster.stub.requests[REVIEWS] == reviews  # in fact none
    # The invented key ids cost at most one JWKS fetch (once per 30 s), the rest none.
    assert cluster.stub.requests["openid.jwks"] - jwks <= 1
    assert set(codes) == {"InvalidToken", "UnknownSigningKey"}, codes
    log = cluster.broker.log()
    assert not [bad for bad in forged if bad in log]
    assert "Traceback" not in log


def test_rotated_tokens_cost_at_most_a_tenth_of_a_review_per_issuance(cluster: Cluster) -> None:
    """30 pods, each asking 4 times with a token the kubelet has just rotated."""
    pods = [cluster.add_pod("rotating")[0] for _ in range(30)]
    reviews = cluster.stub.requests[REVIEWS]
    issued = 0
    with cluster.broker.client() as http:
        for _ in range(4):
            for pod in pods:
                response = post(http, cluster.authority.pod_token(pod))
                assert response.status_code == 200, response.text
                issued += 1
    per_issuance = (cluster.stub.requests[REVIEWS] - reviews) / issued
    assert issued == 120 and per_issuance <= 0.1, per_issuance


def test_a_pod_that_hid_from_the_watch_is_refused_at_its_deletion(cluster: Cluster) -> None:
    """The tenant removes the injected label (the broker's watch drops the pod and everything
    held for it), keeps getting credentials by GET, then the pod is deleted."""
    pod, token = cluster.add_pod("hiding")
    name = pod["metadata"]["name"]
    wait_until(lambda: cluster.broker.issue(token).status_code == 200, what="first issuance")
    first = cluster.broker.issue(token).json()["AccessKeyId"]
    forgotten = cluster.broker.metric("sidecred_broker_forgotten_pods_total")
    hidden = cluster.stub.get("pods", name, "shop")
    del hidden["metadata"]["labels"]["sidecred.dev/injected"]
    cluster.stub.put("pods", hidden)
    wait_until(
        lambda: cluster.broker.metric("sidecred_broker_forgotten_pods_total") > forgotten,
        what="the broker forgetting the pod that left its selector",
    )
    served = cluster.broker.issue(token)
    assert served.status_code == 200  # still a live pod with its sidecar: served by GET
    assert served.json()["AccessKeyId"] != first  # its credentials were dropped with it
    gets = cluster.stub.requests["pods.get"]
    assert cluster.broker.issue(token).status_code == 200
    assert cluster.stub.requests["pods.get"] == gets + 1  # never cached: read every time
    cluster.stub.delete("pods", name, "shop")
    # The very next issuance is refused, with no watch event to wait for (so well within
    # the 5 s the issue allows).
    refused = cluster.broker.issue(token)
    assert refused.status_code in (401, 403), refused.text
    assert refused.json()["code"] == "PodNotFound"


def test_a_deleted_pod_is_refused_once_its_deletion_is_watched(cluster: Cluster) -> None:
    pod, token = cluster.add_pod("deleted")
    wait_until(lambda: cluster.broker.issue(token).status_code == 200, what="first issuance")
    cluster.stub.delete("pods", pod["metadata"]["name"], "shop")
    refused = cluster.wait_for_status(token, 401, "the deletion reaching the broker")
    assert "invalidated" in refused.json()["message"]
