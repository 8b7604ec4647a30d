"""The reporter inside the real `sidecred webhook` process: flags, Lease, events, metrics."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from sidecred.dev.kube_stub import KubeApiStub, write_kubeconfig
from sidecred.dev.processes import free_port, stop_process, wait_until
from tests.events.conftest import WEBHOOK_NAMESPACE, Failing, events
from tests.webhook_server.webhook_process import SNI, WebhookProcess, issue_certificates

pytestmark = pytest.mark.slow


def run_webhook(tmp: Path, stub: KubeApiStub, *flags: str) -> WebhookProcess:
    """`sidecred webhook` as the chart runs it: its pod namespace from the downward API."""
    cert_dir = tmp / "tls"
    issue_certificates(cert_dir)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIDECRED_")}
    env.update(SIDECRED_POD_NAMESPACE=WEBHOOK_NAMESPACE, SIDECRED_POD_NAME="sidecred-webhook-0")
    port, log_file = free_port(), tmp / "webhook.log"
    with log_file.open("wb") as log:
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "sidecred.cli", "webhook", "--host", "127.0.0.1"),
                *("--tls-cert", str(cert_dir / "tls.crt"), "--tls-key", str(cert_dir / "tls.key")),
                *("--port", str(port), "--kubeconfig", str(write_kubeconfig(tmp / "kc", stub.url))),
                *flags,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    return WebhookProcess(process, port, cert_dir, log_file)


@pytest.fixture
def webhooks() -> Iterator[Callable[..., WebhookProcess]]:
    started: list[WebhookProcess] = []

    def start(*args: object) -> WebhookProcess:
        webhook = run_webhook(*args)  # type: ignore[arg-type]
        started.append(webhook)
        wait_until(lambda: answers(webhook), timeout=30, what="webhook /healthz")
        return webhook

    yield start
    for webhook in started:
        webhook.stop()


def answers(webhook: WebhookProcess) -> bool:
    assert webhook.process.poll() is None, webhook.log()
    try:
        with webhook.client() as http:
            return http.get("/healthz", extensions=SNI).status_code == 200
    except httpx.TransportError:
        return False


def metrics_text(webhook: WebhookProcess) -> str:
    with webhook.client() as http:
        return http.get("/metrics", extensions=SNI).text


def test_webhook_posts_the_event_and_holds_the_lease(
    tmp_path: Path, failing: Failing, webhooks: Callable[..., WebhookProcess]
) -> None:
    stub = failing.stub
    webhook = webhooks(tmp_path, stub, "--events-interval", "0.2")
    wait_until(lambda: events(stub, "CredentialsUnavailable"), timeout=30, what="the event")
    [event] = events(stub, "CredentialsUnavailable")
    assert "AccessDenied" in event["message"] and event["source"] == {"component": "sidecred"}
    lease = stub.get("leases", "sidecred-events", WEBHOOK_NAMESPACE)
    assert lease["spec"]["holderIdentity"].startswith("sidecred-webhook-0_")
    assert event["reportingInstance"] == lease["spec"]["holderIdentity"]
    counted = 'sidecred_pod_events_total{reason="CredentialsUnavailable"} 1.0'
    gauged = 'sidecred_sidecars_not_ready{code="AccessDenied"} 1.0'  # set at the pass's end
    wait_until(lambda: {counted, gauged} <= set(metrics_text(webhook).splitlines()))
    assert "sidecred_event_reporter_leader 1.0" in metrics_text(webhook)
    webhook.stop()  # SIGTERM: the Lease is released for the next replica
    assert not stub.get("leases", "sidecred-events", WEBHOOK_NAMESPACE)["spec"]["holderIdentity"]


def test_no_events_means_no_lease_and_no_pod_watch(
    tmp_path: Path, stub: KubeApiStub, webhooks: Callable[..., WebhookProcess]
) -> None:
    webhook = webhooks(tmp_path, stub, "--no-events")
    wait_until(lambda: "sidecred_admissions" in metrics_text(webhook), timeout=30)
    assert "sidecred_event_reporter_leader" not in metrics_text(webhook)
    assert stub.items("leases") == [] and stub.requests["pods.list"] == 0


@pytest.mark.parametrize(
    ("flags", "error"),
    [
        (("--lease-name", "Not_A_Name"), "--lease-name='Not_A_Name' is not a DNS subdomain name"),
        (("--events-interval", "0"), "--events-interval='0' is not 0.1-300 seconds"),
    ],
)
def test_bad_event_flags_are_a_clear_startup_error(
    tmp_path: Path, stub: KubeApiStub, flags: tuple[str, ...], error: str
) -> None:
    webhook = run_webhook(tmp_path, stub, *flags)
    try:
        assert webhook.process.wait(timeout=60) == 2
    finally:
        stop_process(webhook.process)
    assert error in webhook.log() and "Traceback" not in webhook.log()
