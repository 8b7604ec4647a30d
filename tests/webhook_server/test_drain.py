"""A rolling upgrade drops no admission: a replica terminated while admissions flow.

Two real webhook processes over TLS behind a Service stand-in (new connections go
to replicas whose /readyz is 200); four keep-alive clients admit pods the whole
time; one replica gets SIGTERM and exits. Every admission is answered.
"""

from __future__ import annotations

import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sidecred.dev.kube_stub import KubeApiStub
from sidecred.dev.processes import wait_until
from tests.support.admitting_clients import answered_while_draining, terminate_while_calling
from tests.support.service_proxy import Backend, ServiceProxy, https_readiness

from .conftest import start_stub
from .webhook_process import (
    SERVER_NAME,
    SNI,
    WebhookProcess,
    issue_certificates,
    pod,
    review,
    start_webhook,
)

DELAY = "5"  # --shutdown-delay: long beside the Service stand-in's 1 s propagation


@pytest.fixture
def stub() -> Iterator[KubeApiStub]:
    api = start_stub()
    yield api
    api.stop()


def replicas(tmp: Path, kube_url: str, count: int, *flags: str) -> list[WebhookProcess]:
    """`count` webhooks sharing one serving certificate (one Secret in a cluster)."""
    issue_certificates(tmp / "tls")
    started = []
    for index in range(count):
        home = tmp / f"replica-{index}"
        shutil.copytree(tmp / "tls", home / "tls")
        started.append(start_webhook(home, kube_url, *flags))
    return started


def admit(http: httpx.Client) -> str | None:
    response = http.post("/mutate", json=review(pod("shop-reader")), extensions=SNI)
    if response.status_code != 200:
        return f"HTTP {response.status_code}: {response.text[:200]}"
    answer = response.json()["response"]
    return None if answer["allowed"] else f"denied: {answer['status']['message']}"


def test_a_replica_terminated_while_admissions_flow_drops_none(
    stub: KubeApiStub, tmp_path: Path
) -> None:
    webhooks = replicas(tmp_path, stub.url, 2, "--shutdown-delay", DELAY)
    ca = str(tmp_path / "tls" / "ca.crt")
    proxy = ServiceProxy([Backend(w.port) for w in webhooks], https_readiness(ca, SERVER_NAME))
    victim = webhooks[0]
    try:
        tally, at_exit = terminate_while_calling(proxy, ca, admit, victim.process)
    finally:
        proxy.close()
        for webhook in webhooks:
            webhook.stop()

    assert tally.drops == []
    assert tally.answered >= at_exit + 40
    # It exits as a terminated process does, after answering while it drained.
    assert victim.process.returncode == -signal.SIGTERM
    assert answered_while_draining(victim.log(), "admission") > 0
    assert proxy.backends[1].connections > 0 and proxy.refused == 0


def test_readiness_turns_off_at_once_and_a_second_signal_stops_it(
    stub: KubeApiStub, tmp_path: Path
) -> None:
    (webhook,) = replicas(tmp_path, stub.url, 1, "--shutdown-delay", "600")
    try:
        with webhook.client() as http:
            wait_until(lambda: http.get("/readyz", extensions=SNI).status_code == 200)
        webhook.process.send_signal(signal.SIGTERM)
        ca = webhook.cert_dir / "ca.crt"
        with httpx.Client(verify=str(ca), timeout=10) as http:
            # Keep-alive asked for; the draining webhook closes the connection after answering.
            def readyz() -> httpx.Response:
                return http.get(f"{webhook.url}/readyz", extensions=SNI)

            wait_until(lambda: readyz().status_code == 503, what="not ready")
            response = readyz()
            assert response.json()["reason"].startswith("shutting down")
            assert response.headers["connection"] == "close"
            admitted = http.post(
                f"{webhook.url}/mutate", json=review(pod("shop-reader")), extensions=SNI
            )
            assert admitted.json()["response"]["allowed"] is True  # still answering
            assert http.get(f"{webhook.url}/healthz", extensions=SNI).status_code == 200
        webhook.process.send_signal(signal.SIGTERM)  # a second signal: stop now, not in 600 s
        wait_until(lambda: webhook.process.poll() is not None, timeout=20, what="exit")
    finally:
        webhook.stop()
    assert webhook.process.returncode == -signal.SIGTERM
