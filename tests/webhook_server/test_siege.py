"""The webhook under siege: each attack of the outside review, run against the real
`sidecred webhook` process over TLS, now fails.

The rule they share: no caller can make the webhook hold more than a fixed budget of
memory, API calls, CPU or log bytes. What each costs now, against an idle baseline
and the code before, is measured in bench/siege.py (bench/RESULTS.md); these tests
show the behaviour, never the timing.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import re
import ssl
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from sidecred.dev.kube_stub import KubeApiStub
from sidecred.dev.processes import wait_until
from sidecred.kube.miss_budget import MISS_READ_BURST, MISS_READS_PER_SECOND
from sidecred.pods.shape import MAX_CONTAINERS

from .conftest import POLICY, module_webhook
from .webhook_process import (
    SERVER_NAME,
    SNI,
    WebhookProcess,
    pod,
    post_review,
    review,
    start_webhook,
)

BUDGET_MIB = 4
MIB = 1024 * 1024


webhook = module_webhook("siege", "--request-body-budget-mib", str(BUDGET_MIB))


@pytest.fixture
def http(webhook: WebhookProcess) -> Iterator[httpx.Client]:
    with webhook.client() as client:
        yield client


def ordinary_admission(http: httpx.Client) -> dict[str, Any]:
    answer = post_review(http, "/mutate", review(pod("shop-reader")))
    assert answer["allowed"] is True, answer
    return answer


def gauge(http: httpx.Client, name: str) -> float:
    text = http.get("/metrics", extensions=SNI).text
    found = re.search(rf"^{name} (\S+)$", text, re.M)
    assert found, name
    return float(found.group(1))


# --- memory: stalled bodies ----------------------------------------------------------
async def stall(port: int, ca: Path, announced: int, sent: int) -> bytes:
    """A TLS request that announces `announced` bytes, sends `sent` and goes quiet;
    what the webhook answers before it closes the connection."""
    context = ssl.create_default_context(cafile=str(ca))
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=context, server_hostname=SERVER_NAME
    )
    head = (
        f"POST /mutate HTTP/1.1\r\nHost: {SERVER_NAME}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {announced}\r\n\r\n"
    )
    writer.write(head.encode() + b'{"pad": "' + b"x" * (sent - 9))
    answer = b""
    with contextlib.suppress(ConnectionError, ssl.SSLError):
        async with asyncio.timeout(60):
            while chunk := await reader.read(65536):
                answer += chunk
    writer.close()
    return answer


def siege(
    webhook: WebhookProcess, http: httpx.Client, count: int, announced: int, held: int
) -> list[bytes]:
    """`count` stalled bodies; once the budget holds `held` bytes of them, an ordinary
    admission (answered and allowed). Returns what each stalled request was answered."""

    async def run() -> list[bytes]:
        ca = webhook.cert_dir / "ca.crt"
        sent = announced - min(announced // 10, 100_000)
        attacks = [
            asyncio.create_task(stall(webhook.port, ca, announced, sent)) for _ in range(count)
        ]
        await asyncio.to_thread(
            wait_until,
            lambda: gauge(http, "sidecred_request_body_bytes") == held,
            what="the stalled bodies to take their share of the budget",
        )
        await asyncio.to_thread(ordinary_admission, http)
        assert gauge(http, "sidecred_request_body_bytes") <= BUDGET_MIB * MIB
        return await asyncio.gather(*attacks)

    answers = asyncio.run(run())
    assert not any(a.startswith(b"HTTP/1.1 200") for a in answers)
    wait_until(lambda: gauge(http, "sidecred_request_body_bytes") == 0, what="room given back")
    assert "Traceback" not in webhook.log()
    return answers


def refused(answers: list[bytes], reason: bytes) -> list[bytes]:
    found = [a for a in answers if a.startswith(b"HTTP/1.1 503") and reason in a]
    assert all(b"retry" in a and b"connection: close" in a.lower() for a in found)
    return found


def test_large_stalled_bodies_get_their_share_of_the_budget_and_no_more(
    webhook: WebhookProcess, http: httpx.Client
) -> None:
    """Six connections announce 2 MiB each, send most of it and stall. Large bodies may
    use 15/16 of the 4 MiB budget: one is held, the others are refused unread, and an
    ordinary admission finds room at once."""
    answers = siege(webhook, http, 6, 2 * MIB, 2 * MIB)
    assert len(refused(answers, b"at its memory budget")) >= 4


def test_small_stalled_bodies_give_way_to_an_ordinary_admission(
    webhook: WebhookProcess, http: httpx.Client
) -> None:
    """Sixty-four connections announce 64 KiB each and stall, filling the whole budget:
    the ordinary admission takes the room of the oldest stalled body, which is refused."""
    answers = siege(webhook, http, 64, 64 * 1024, BUDGET_MIB * MIB)
    assert refused(answers, b"arrived too slowly")


def test_a_body_without_a_length_is_refused_before_it_is_read(http: httpx.Client) -> None:
    response = http.post(
        "/mutate",
        content=iter([b"{" * 10]),  # chunked: its size cannot be known in advance
        headers={"Content-Type": "application/json"},
        extensions=SNI,
    )
    assert response.status_code == 411
    assert "Content-Length" in response.json()["error"]


# --- API calls and log bytes: impossible names -----------------------------------------
def impossible(index: int, where: str) -> dict[str, Any]:
    name = f"{index:05d}" + "n" * 60_000
    if where == "request":
        body = review(pod("shop-reader"))
        body["request"]["namespace"] = name
        del body["request"]["object"]["metadata"]["namespace"]
        return body
    tenant_pod = pod("shop-reader")
    tenant_pod["metadata"]["namespace"] = name
    return review(tenant_pod, namespace="shop")


def test_impossible_names_cost_no_api_call_and_bounded_log(
    webhook: WebhookProcess, http: httpx.Client, module_stub: KubeApiStub
) -> None:
    """1,200 requests naming distinct 60,000-character namespaces: a 400 each, no GET, and
    a log line of bounded size each (once 1,200 GETs and 145 MB of log)."""
    gets, log_before = module_stub.requests["get"], len(webhook.log())
    for index in range(600):
        response = http.post("/mutate", json=impossible(index, "request"), extensions=SNI)
        assert response.status_code == 400
        assert "request.namespace a DNS-1123 label" in response.json()["error"]
    for index in range(600, 1200):
        answer = post_review(http, "/mutate", impossible(index, "object"))
        assert answer["allowed"] is False and answer["status"]["code"] == 400
        assert "metadata.namespace must be a DNS-1123 label" in answer["status"]["message"]
    assert module_stub.requests["get"] == gets
    wait_until(lambda: webhook.log().count("nnnnnnnnnn") >= 1200, what="1,200 log lines")
    assert len(webhook.log()) - log_before < 1200 * 2048


# --- API calls: unknown names ----------------------------------------------------------
def test_a_flood_of_unknown_namespaces_costs_a_bounded_number_of_gets(
    http: httpx.Client, module_stub: KubeApiStub
) -> None:
    """600 distinct valid names that do not exist: GETs stop at the burst plus the rate
    (once 600 GETs in 4.5 s); the rest are refused 'not known yet, retry'."""
    gets = module_stub.requests["get"]
    loop = asyncio.new_event_loop()
    started = loop.time()
    answers = []
    for index in range(600):
        ghost = pod("shop-reader", namespace=f"ghost-{index}")
        answers.append(post_review(http, "/mutate", review(ghost, namespace=f"ghost-{index}")))
    elapsed = loop.time() - started
    loop.close()
    spent = module_stub.requests["get"] - gets
    assert spent <= MISS_READ_BURST + MISS_READS_PER_SECOND * (elapsed + 1)
    assert all(a["allowed"] is False and a["status"]["code"] == 503 for a in answers)
    messages = [a["status"]["message"] for a in answers]
    assert sum("is not known yet; retry" in m for m in messages) >= 600 - spent
    assert sum("not found" in m for m in messages) == spent
    ordinary_admission(http)  # a namespace the cache holds costs nothing of the budget


# --- CPU: huge pods ---------------------------------------------------------------------
def huge_review(containers: int) -> bytes:
    tenant_pod = pod("shop-reader")
    template = dict(
        tenant_pod["spec"]["containers"][0],
        env=[{"name": "LOG_LEVEL", "value": "info"}, {"name": "REGION", "value": "eu-west-1"}],
    )
    tenant_pod["spec"]["containers"] = [
        dict(copy.deepcopy(template), name=f"c{index}") for index in range(containers)
    ]
    return json.dumps(review(tenant_pod)).encode()


def test_huge_pods_are_refused_and_ordinary_admissions_answered_meanwhile(
    webhook: WebhookProcess, http: httpx.Client
) -> None:
    """Four clients send reviews of a 10,000-container pod (2 MiB each) while ordinary
    admissions arrive: the huge ones are refused by count, the others answered."""
    body = huge_review(10_000)
    assert 1.5 * MIB < len(body) < 3 * MIB

    def send_huge(_: int) -> dict[str, Any]:
        with webhook.client() as client:
            response = client.post(
                "/mutate",
                content=body,
                headers={"Content-Type": "application/json"},
                extensions=SNI,
            )
            assert response.status_code == 200, response.text
            return response.json()["response"]

    with ThreadPoolExecutor(4) as pool:
        huge = [pool.submit(send_huge, index) for index in range(8)]
        for _ in range(20):
            ordinary_admission(http)
        answers = [future.result() for future in huge]
    for answer in answers:
        assert answer["allowed"] is False and answer["status"]["code"] == 400
        assert "has 10000 containers" in answer["status"]["message"]
        assert f"at most {MAX_CONTAINERS}" in answer["status"]["message"]


# --- malformed shapes ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("envFrom", 5, "spec.containers[app].envFrom must be a list, got int 5"),
        ("imagePullSecrets", 5, "spec.imagePullSecrets must be a list, got int 5"),
        ("mountPath", None, "spec.containers[app].volumeMounts[data].mountPath must be a string"),
    ],
)
def test_wrongly_typed_fields_are_a_400_naming_the_field(
    webhook: WebhookProcess, http: httpx.Client, field: str, value: Any, named: str
) -> None:
    tenant_pod = pod("shop-reader")
    if field == "imagePullSecrets":
        tenant_pod["spec"]["imagePullSecrets"] = value
    elif field == "mountPath":
        tenant_pod["spec"]["containers"][0]["volumeMounts"] = [{"name": "data", "mountPath": value}]
    else:
        tenant_pod["spec"]["containers"][0][field] = value
    for path in ("/mutate", "/validate"):
        answer = post_review(http, path, review(tenant_pod))
        assert answer["allowed"] is False and answer["status"]["code"] == 400
        assert named in answer["status"]["message"]
    assert "Traceback" not in webhook.log() and '"exception"' not in webhook.log()


# --- what a denial tells ---------------------------------------------------------------
def test_a_denial_does_not_tell_the_policy(http: httpx.Client) -> None:
    answer = post_review(http, "/mutate", review(pod("admin")))
    assert answer["allowed"] is False and answer["status"]["code"] == 403
    message = answer["status"]["message"]
    assert POLICY["iam.amazonaws.com/permitted"] not in message
    assert "shop-" not in message
    assert 'namespace "shop"' in message and "iam.amazonaws.com/permitted" in message


def test_explain_denials_puts_the_policy_back(module_stub: KubeApiStub, tmp_path: Path) -> None:
    explaining = start_webhook(tmp_path, module_stub.url, "--explain-denials")
    try:
        with explaining.client() as client:
            answer = post_review(client, "/mutate", review(pod("admin")))
    finally:
        explaining.stop()
    assert answer["allowed"] is False
    assert POLICY["iam.amazonaws.com/permitted"] in answer["status"]["message"]
