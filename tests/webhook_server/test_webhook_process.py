"""`sidecred webhook` as a real process over TLS, against the API server stub."""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import jsonpatch
import pytest
from cryptography import x509

from sidecred.dev.kube_stub import KubeApiStub

from .conftest import POLICY, module_webhook, wait_until
from .webhook_process import (
    SERVER_NAME,
    SNI,
    WebhookProcess,
    decode_patch,
    issue_certificates,
    pod,
    post_review,
    review,
    start_webhook,
)

PERMITTED_ROLE = "shop-reader"
FORBIDDEN_ROLE = "reader"


webhook = module_webhook("webhook", "--sidecar-image-pull-secrets", "registry-corp")


@pytest.fixture(scope="module")
def http(webhook: WebhookProcess) -> Iterator[httpx.Client]:
    with webhook.client() as client:
        wait_until(lambda: client.get("/readyz", extensions=SNI).status_code == 200, what="/readyz")
        yield client


def metric_value(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text format, 0 if absent."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        head, _, value = line.rpartition(" ")
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            return float(value)
    return 0.0


def test_health_and_readiness(http: httpx.Client) -> None:
    assert http.get("/healthz", extensions=SNI).json() == {"status": "ok"}
    assert http.get("/readyz", extensions=SNI).json() == {"status": "ready"}


def test_start_log_shows_the_webhook_options(http: httpx.Client, webhook: WebhookProcess) -> None:
    """The "webhook starting" line carries the webhook's own settings, as parsed."""
    started = next(
        json.loads(line) for line in webhook.log().splitlines() if '"webhook starting"' in line
    )
    assert started["port"] == webhook.port
    assert started["config"]["sidecar_image_pull_secrets"] == ["registry-corp"]
    assert started["config"]["token_audience"] == "sidecred"


def test_annotated_pod_is_patched(http: httpx.Client) -> None:
    obj = pod(PERMITTED_ROLE)
    response = post_review(http, "/mutate", review(obj))
    assert response["allowed"] is True
    patched = jsonpatch.apply_patch(obj, decode_patch(response))
    assert patched["metadata"]["annotations"]["sidecred.dev/injected"] == (
        "arn:aws:iam::111122223333:role/shop-reader"
    )
    sidecars = [c for c in patched["spec"]["initContainers"] if c["name"] == "sidecred"]
    assert len(sidecars) == 1 and sidecars[0]["restartPolicy"] == "Always"
    app_env = {e["name"]: e.get("value") for e in patched["spec"]["containers"][0]["env"]}
    assert app_env["AWS_CONTAINER_CREDENTIALS_FULL_URI"].startswith("http://127.0.0.1:")
    assert patched["spec"]["imagePullSecrets"] == [{"name": "registry-corp"}]


def test_forbidden_role_is_denied_with_a_readable_message(http: httpx.Client) -> None:
    response = post_review(http, "/mutate", review(pod(FORBIDDEN_ROLE)))
    assert response["allowed"] is False
    assert response["status"]["code"] == 403
    message = response["status"]["message"]
    assert '"arn:aws:iam::111122223333:role/reader"' in message
    assert '"shop"' in message and "iam.amazonaws.com/permitted" in message
    assert "patch" not in response


def test_validate_route_answers(http: httpx.Client) -> None:
    response = post_review(http, "/validate", review(pod(None)))
    assert response["allowed"] is True


def test_unknown_namespace_is_denied(http: httpx.Client) -> None:
    obj = pod(PERMITTED_ROLE, namespace="nowhere")
    response = post_review(http, "/mutate", review(obj, namespace="nowhere"))
    assert response["allowed"] is False
    assert 'namespace "nowhere" not found' in response["status"]["message"]


def test_flood_naming_a_missing_namespace_costs_a_few_gets(
    http: httpx.Client, module_stub: KubeApiStub
) -> None:
    """300 admissions naming a namespace that does not exist: a few API GETs, not 300."""
    before = module_stub.requests["get"]
    obj = pod(PERMITTED_ROLE, namespace="ghost-town")
    for _ in range(300):
        response = post_review(http, "/mutate", review(obj, namespace="ghost-town"))
        assert response["allowed"] is False
        assert 'namespace "ghost-town" not found' in response["status"]["message"]
    assert module_stub.requests["get"] - before <= 3


def test_namespace_created_after_sync_is_admitted(
    http: httpx.Client, module_stub: KubeApiStub
) -> None:
    module_stub.add_namespace("brand-new", POLICY)
    obj = pod(PERMITTED_ROLE, namespace="brand-new")
    response = post_review(http, "/mutate", review(obj, namespace="brand-new"))
    assert response["allowed"] is True, response


def test_warm_cache_makes_no_api_call(http: httpx.Client, module_stub: KubeApiStub) -> None:
    post_review(http, "/mutate", review(pod(PERMITTED_ROLE)))  # warm
    before = dict(module_stub.requests)
    hits_before = metric_value(
        http.get("/metrics", extensions=SNI).text,
        "sidecred_namespace_cache_lookups_total",
        result="hit",
    )
    for _ in range(25):
        assert post_review(http, "/mutate", review(pod(PERMITTED_ROLE)))["allowed"] is True
        assert post_review(http, "/mutate", review(pod(FORBIDDEN_ROLE)))["allowed"] is False
    after = dict(module_stub.requests)
    assert after.get("get", 0) == before.get("get", 0)
    assert after.get("list", 0) == before.get("list", 0)
    text = http.get("/metrics", extensions=SNI).text
    hits = metric_value(text, "sidecred_namespace_cache_lookups_total", result="hit")
    assert hits - hits_before == 50


def test_metrics_carry_the_counters(http: httpx.Client) -> None:
    post_review(http, "/mutate", review(pod(PERMITTED_ROLE)))
    post_review(http, "/mutate", review(pod(FORBIDDEN_ROLE)))
    http.post(
        "/mutate", content=b"[]", headers={"Content-Type": "application/json"}, extensions=SNI
    )
    response = http.get("/metrics", extensions=SNI)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    allowed = metric_value(
        text, "sidecred_admissions_total", webhook="mutate", operation="CREATE", result="allowed"
    )
    assert allowed >= 1
    assert metric_value(text, "sidecred_policy_denials_total", reason="not-permitted") >= 1
    assert metric_value(text, "sidecred_kubernetes_api_calls_total", verb="list") >= 1
    assert metric_value(text, "sidecred_kubernetes_api_calls_total", verb="watch") >= 1
    assert metric_value(text, "sidecred_admission_duration_seconds_count", webhook="mutate") >= 2
    assert metric_value(text, "sidecred_bad_requests_total", status="400") >= 1


def test_api_server_outage_fails_closed_then_recovers(
    http: httpx.Client, module_stub: KubeApiStub
) -> None:
    module_stub.stop()
    try:
        obj = pod(PERMITTED_ROLE, namespace="uncached")
        response = post_review(http, "/mutate", review(obj, namespace="uncached"))
        assert response["allowed"] is False
        message = response["status"]["message"]
        assert '"uncached"' in message and "unreachable" in message
        # A cached namespace is still decided by its policy, both ways.
        assert post_review(http, "/mutate", review(pod(PERMITTED_ROLE)))["allowed"] is True
        assert post_review(http, "/mutate", review(pod(FORBIDDEN_ROLE)))["allowed"] is False
        assert http.get("/readyz", extensions=SNI).status_code == 200
    finally:
        module_stub.start()
    # The watch resumes: a policy change to the cached namespace reaches the
    # webhook through the stream alone (a cached namespace is never fetched).
    gets = module_stub.requests["get"]
    module_stub.set_annotations(
        "shop", {"iam.amazonaws.com/permitted": "arn:aws:iam::111122223333:role/reader"}
    )
    try:
        wait_until(
            lambda: post_review(http, "/mutate", review(pod(FORBIDDEN_ROLE)))["allowed"],
            timeout=60,
            what="the watch to resume and deliver the new policy",
        )
    finally:
        module_stub.set_annotations("shop", POLICY)
    wait_until(
        lambda: post_review(http, "/mutate", review(pod(PERMITTED_ROLE)))["allowed"],
        what="the policy to be restored",
    )
    assert module_stub.requests["get"] == gets


MALFORMED = {
    "not-json": (b"{not json", "application/json", 400),
    "json-array": (b"[]", "application/json", 400),
    "json-string": (b'"AdmissionReview"', "application/json", 400),
    "empty-body": (b"", "application/json", 400),
    "wrong-api-version": (
        json.dumps(
            {"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview", "request": {}}
        ).encode(),
        "application/json",
        422,
    ),
    "wrong-kind": (
        json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "Pod"}).encode(),
        "application/json",
        422,
    ),
    "missing-request": (
        json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}).encode(),
        "application/json",
        400,
    ),
    "wrong-content-type": (b"{}", "text/plain", 415),
    "no-content-type": (b"{}", "", 415),
    "nan-constant": (b'{"apiVersion": NaN}', "application/json", 400),
    "deeply-nested": (b"[" * 100_000 + b"]" * 100_000, "application/json", 400),
}


def _without(field: str) -> bytes:
    body = review(pod(PERMITTED_ROLE))
    request = body["request"]
    del request[field]
    return json.dumps(body).encode()


MALFORMED |= {
    "missing-uid": (_without("uid"), "application/json", 400),
    "missing-object": (_without("object"), "application/json", 400),
}


@pytest.mark.parametrize("case", sorted(MALFORMED), ids=str)
def test_malformed_requests_get_a_clear_4xx(http: httpx.Client, case: str) -> None:
    """Each case once, on /mutate or /validate in turn: both read a review with the same
    code, and tests/hardening/webhook/test_fuzz_http.py sends junk to both."""
    body, content_type, status = MALFORMED[case]
    path = ("/mutate", "/validate")[sorted(MALFORMED).index(case) % 2]
    headers = {"Content-Type": content_type} if content_type else {}
    response = http.post(path, content=body, headers=headers, extensions=SNI)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert isinstance(error, str) and error
    assert "Traceback" not in response.text


def test_huge_body_is_refused_before_it_is_read(http: httpx.Client) -> None:
    body = b'{"pad": "' + b"x" * (10 * 1024 * 1024) + b'"}'
    response = http.post(
        "/mutate", content=body, headers={"Content-Type": "application/json"}, extensions=SNI
    )
    assert response.status_code == 413
    assert "limit" in response.json()["error"]


def test_a_chunked_body_is_refused_unread(http: httpx.Client) -> None:
    """Without a Content-Length the body's room in the budget is unknown: 411 (the API
    server always sends one)."""

    def chunks() -> Iterator[bytes]:
        yield b'{"pad": "'
        for _ in range(10):
            yield b"x" * (1024 * 1024)
        yield b'"}'

    response = http.post(
        "/mutate", content=chunks(), headers={"Content-Type": "application/json"}, extensions=SNI
    )
    assert response.status_code == 411
    assert "Content-Length" in response.json()["error"]


def test_unknown_route_is_a_json_404(http: httpx.Client) -> None:
    response = http.get("/nothing", extensions=SNI)
    assert response.status_code == 404
    assert response.json()


def test_webhook_logs_json_lines(http: httpx.Client, webhook: WebhookProcess) -> None:
    post_review(http, "/mutate", review(pod(FORBIDDEN_ROLE)))

    def admission_logged() -> bool:
        return any('"event":"admission"' in line for line in webhook.log().splitlines())

    wait_until(admission_logged, what="an admission log line")
    for line in webhook.log().splitlines():
        entry = json.loads(line)
        assert {"ts", "level", "event", "logger"} <= entry.keys()
    assert "AWS_CONTAINER_AUTHORIZATION_TOKEN" not in webhook.log()


def test_readyz_is_503_until_the_cache_syncs(tmp_path: Path) -> None:
    api = KubeApiStub()
    api.add_namespace("shop", POLICY)
    api.start()
    api.stop()  # the port is known but nothing listens yet
    process = start_webhook(tmp_path, api.url)
    try:
        with process.client() as http:
            response = http.get("/readyz", extensions=SNI)
            assert response.status_code == 503
            assert "namespace cache has not synced" in response.json()["reason"]
            api.start()
            wait_until(
                lambda: http.get("/readyz", extensions=SNI).status_code == 200,
                timeout=60,
                what="/readyz after the API server came up",
            )
    finally:
        process.stop()
        api.stop()


def _peer_serial(port: int, ca_file: Path) -> int | None:
    context = ssl.create_default_context(cafile=str(ca_file))
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            with context.wrap_socket(raw, server_hostname=SERVER_NAME) as tls:
                der = tls.getpeercert(binary_form=True)
    except ssl.SSLError:
        return None  # still the old certificate, signed by the old CA
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def test_rotated_certificate_is_served_without_restart(tmp_path: Path, stub: KubeApiStub) -> None:
    process = start_webhook(tmp_path, stub.url)
    try:
        cert_dir = process.cert_dir
        first = x509.load_pem_x509_certificate((cert_dir / "tls.crt").read_bytes())
        assert _peer_serial(process.port, cert_dir / "ca.crt") == first.serial_number
        issue_certificates(cert_dir, force=True)
        second = x509.load_pem_x509_certificate((cert_dir / "tls.crt").read_bytes())
        wait_until(
            lambda: _peer_serial(process.port, cert_dir / "ca.crt") == second.serial_number,
            what="the rotated certificate",
        )
        assert process.process.poll() is None
    finally:
        process.stop()


def test_bad_tls_files_are_a_clear_startup_error(tmp_path: Path) -> None:
    (tmp_path / "tls.crt").write_text("garbage")
    (tmp_path / "tls.key").write_text("garbage")
    result = subprocess.run(
        [
            *(sys.executable, "-m", "sidecred.cli", "webhook"),
            *("--tls-cert", str(tmp_path / "tls.crt"), "--tls-key", str(tmp_path / "tls.key")),
            *("--kubeconfig", str(tmp_path / "missing")),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "cannot load --tls-cert" in result.stderr
    assert "Traceback" not in result.stderr


def _run_webhook(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    issue_certificates(tmp_path / "tls")
    return subprocess.run(
        [
            *(sys.executable, "-m", "sidecred.cli", "webhook"),
            *("--tls-cert", str(tmp_path / "tls" / "tls.crt")),
            *("--tls-key", str(tmp_path / "tls" / "tls.key")),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


def test_no_cluster_and_no_kubeconfig_is_a_clear_startup_error(tmp_path: Path) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SIDECRED_", "KUBERNETES_")) and k != "KUBECONFIG"
    }
    env["HOME"] = str(tmp_path)  # no ~/.kube/config
    result = _run_webhook(tmp_path, "--port", "1", env=env)
    assert result.returncode == 2
    assert "not running in a cluster" in result.stderr and "--kubeconfig" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("option", "fragments"),
    [
        pytest.param(("--session-duration", "60"), ["--session-duration"], id="invalid-option"),
        pytest.param(
            ("--credential-source", "assume-role"),
            ["unsafe for multi-tenant clusters", "--allow-unsafe-assume-role-node-credentials"],
            id="assume-role-without-the-unsafe-flag",
        ),
    ],
)
def test_a_refused_option_is_a_clear_startup_error(
    tmp_path: Path, option: tuple[str, str], fragments: list[str]
) -> None:
    result = _run_webhook(tmp_path, "--kubeconfig", str(tmp_path / "none"), *option)
    assert result.returncode == 2
    for fragment in fragments:
        assert fragment in result.stderr
    assert "Traceback" not in result.stderr


def test_probe_without_sni_is_served(webhook: WebhookProcess) -> None:
    """The kubelet probes https://<pod IP>:8443 and sends no server name."""
    context = ssl.create_default_context(cafile=str(webhook.cert_dir / "ca.crt"))
    context.check_hostname = False
    with socket.create_connection(("127.0.0.1", webhook.port), timeout=5) as raw:
        with context.wrap_socket(raw) as tls:
            tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            reply = b""
            while chunk := tls.recv(4096):
                reply += chunk
    assert reply.startswith(b"HTTP/1.1 200")
