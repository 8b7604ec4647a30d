"""`sidecred broker` end to end over TLS: the API stub, TokenReview, moto as STS."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import re
from typing import Any

import botocore.session
import httpx

from sidecred.dev.processes import wait_until
from tests.support.sts import MOTO_REGION
from tests.support.wire import CREDENTIAL_KEYS

from .conftest import Cluster
from .pods import BASE, POLICY, READER, broker_pod

PERMITTED = "iam.amazonaws.com/permitted"

RFC3339_Z = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


def caller_arn(sts_url: str, creds: dict[str, Any]) -> str:
    """GetCallerIdentity with the issued credentials: which session did they reach STS as?"""
    client = botocore.session.get_session().create_client(
        "sts",
        region_name=MOTO_REGION,
        endpoint_url=sts_url,
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["Token"],
    )
    return str(client.get_caller_identity()["Arn"])


def assert_error(response: httpx.Response, status: int, code: str, *words: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["Code"] == body["code"] == code
    assert body["Message"] == body["message"]
    for word in words:
        assert word in body["message"], body["message"]
    return str(body["message"])


def test_a_pod_gets_its_annotated_role_as_the_sidecar_endpoint_answers(cluster: Cluster) -> None:
    pod, token = cluster.add_pod()
    response = cluster.broker.issue(token)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    creds = response.json()
    assert set(creds) == set(CREDENTIAL_KEYS)
    assert RFC3339_Z.fullmatch(creds["Expiration"])
    assert (creds["RoleArn"], creds["AccountId"]) == (READER, "123456789012")
    name = pod["metadata"]["name"]
    assert caller_arn(cluster.sts.url, creds) == (
        f"arn:aws:sts::123456789012:assumed-role/shop-reader/shop.{name}"
    )
    log = cluster.broker.log()
    records = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert any(r.get("pod") == name and r.get("result") == "issued" for r in records)
    assert token not in log and creds["SecretAccessKey"] not in log and creds["Token"] not in log


def test_token_errors_are_401(cluster: Cluster) -> None:
    pod, _ = cluster.add_pod()
    assert_error(cluster.broker.issue(None), 401, "MissingToken", "Authorization")
    assert_error(cluster.broker.issue("garbage"), 401, "InvalidToken")
    expired = cluster.authority.pod_token(pod, expires_in=-120)  # past the 60 s of leeway
    assert_error(cluster.broker.issue(expired), 401, "InvalidToken", "expired")
    for_sts = cluster.authority.pod_token(pod, audiences=["sidecred"])
    assert_error(cluster.broker.issue(for_sts), 401, "WrongAudience", "audiences")
    log = cluster.broker.log()
    assert expired not in log and for_sts not in log


def test_pod_errors_are_403_naming_the_pod(cluster: Cluster) -> None:
    _, unannotated = cluster.add_pod(role=None)
    assert_error(
        cluster.broker.issue(unannotated), 403, "PodNotAnnotated", "iam.amazonaws.com/role"
    )
    web_identity_config = dataclasses.replace(
        cluster.broker.config, credential_source="web-identity"
    )
    _, web_identity = cluster.add_pod(config=web_identity_config)
    assert_error(
        cluster.broker.issue(web_identity), 403, "NoCanonicalSidecar", "SIDECRED_CREDENTIAL_SOURCE"
    )
    _, admin = cluster.add_pod(role=BASE + "admin", admitted_under={PERMITTED: ".*"})
    assert_error(
        cluster.broker.issue(admin),
        403,
        "RoleNotPermitted",
        f'role "{BASE}admin" is not permitted in namespace "shop"',
        "iam.amazonaws.com/permitted=",
    )


def test_a_deleted_or_replaced_pod_is_refused_even_with_a_valid_token(cluster: Cluster) -> None:
    pod, token = cluster.add_pod()
    assert cluster.broker.issue(token).status_code == 200
    name = pod["metadata"]["name"]
    replacement = dict(pod, metadata={k: v for k, v in pod["metadata"].items() if k != "uid"})
    cluster.stub.delete("pods", name, "shop")
    new = cluster.stub.put("pods", replacement)
    assert new["metadata"]["uid"] != pod["metadata"]["uid"]
    replaced = cluster.wait_for_code(token, "PodReplaced", "the replacement reaching the cache")
    assert_error(replaced, 403, "PodReplaced", new["metadata"]["uid"])
    cluster.stub.delete("pods", name, "shop")
    # Out of the cache, the token goes to a TokenReview, which the API server refuses.
    gone = cluster.wait_for_status(token, 401, "the deletion reaching the pod cache")
    assert_error(gone, 401, "InvalidToken", "invalidated")


def test_revocation_stops_the_next_issuance_and_restoring_brings_it_back(
    cluster: Cluster,
) -> None:
    _, token = cluster.add_pod()
    first = cluster.broker.issue(token)
    assert first.status_code == 200
    cluster.stub.set_annotations("shop", {"iam.amazonaws.com/permitted": BASE + "other-.*"})
    try:
        refused = cluster.wait_for_status(token, 403, "the policy change reaching the broker")
        assert_error(
            refused,
            403,
            "RoleNotPermitted",
            f'role "{READER}" is not permitted in namespace "shop"',
            f'iam.amazonaws.com/permitted="{BASE}other-.*"',
        )
    finally:
        cluster.stub.set_annotations("shop", POLICY)
    restored = cluster.wait_for_status(token, 200, "the restored policy reaching the broker")
    # Credentials still in their reuse window come back unchanged: no new STS call.
    assert restored.json()["AccessKeyId"] == first.json()["AccessKeyId"]


def test_twenty_concurrent_callers_cost_one_sts_call(cluster: Cluster) -> None:
    _, token = cluster.add_pod()
    before = cluster.broker.metric("sidecred_broker_sts_calls_total", result="ok")
    with cluster.broker.client() as http:  # one TLS client shared by the threads
        with concurrent.futures.ThreadPoolExecutor(20) as pool:
            responses = list(pool.map(lambda _: cluster.broker.issue(token, http), range(20)))
    assert [r.status_code for r in responses] == [200] * 20
    assert len({r.json()["AccessKeyId"] for r in responses}) == 1
    after = cluster.broker.metric("sidecred_broker_sts_calls_total", result="ok")
    assert after - before == 1


def test_warm_issuances_make_no_api_calls_and_survive_the_api_server_going_away(
    cluster: Cluster,
) -> None:
    pod, token = cluster.add_pod()
    wait_until(lambda: cluster.broker.issue(token).status_code == 200, what="the pod in the cache")
    reviews = cluster.stub.requests["tokenreviews.create"]
    gets = cluster.stub.requests["pods.get"]
    rotated = cluster.authority.pod_token(pod)
    assert cluster.broker.issue(token).status_code == 200
    assert cluster.broker.issue(rotated).status_code == 200  # a new token: no review either
    assert cluster.stub.requests["tokenreviews.create"] == reviews
    assert cluster.stub.requests["pods.get"] == gets
    cluster.stub.stop()
    try:
        assert cluster.broker.issue(token).status_code == 200
        # A pod the watch has not seen needs the API server, which is gone.
        unseen = cluster.stub.put("pods", broker_pod("unseen", config=cluster.broker.config))
        late = cluster.authority.pod_token(unseen)
        assert_error(cluster.broker.issue(late), 503, "KubernetesUnavailable", "TokenReview")
    finally:
        cluster.stub.start()
    cluster.wait_for_status(late, 200, "the API server back")
