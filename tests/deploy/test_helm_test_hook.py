"""The `helm test` hook pod, run for real: its rendered command sends one
AdmissionReview to a real `sidecred webhook` over TLS and checks the answer."""

from __future__ import annotations

import base64
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy.chart_support import CA_BUNDLE, find, rendered_hooks
from tests.webhook_server.conftest import webhook_on_stub
from tests.webhook_server.webhook_process import SERVER_NAME, WebhookProcess, issue_certificates


@pytest.fixture(scope="module")
def webhook(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebhookProcess]:
    with webhook_on_stub(tmp_path_factory.mktemp("webhook")) as process:
        yield process


def _hook_container(value_set: str) -> dict:
    (pod,) = rendered_hooks(value_set)
    assert pod["kind"] == "Pod"
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["spec"]["restartPolicy"] == "Never"
    (container,) = pod["spec"]["containers"]
    return container


def _run(container: dict, url: str, ca: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The container's command with this interpreter, its env pointed at `url` on loopback."""
    program, *args = container["command"]
    assert program == "python"
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["SIDECRED_TEST_URL"] == "https://sidecred.sidecred.svc:443/validate"
    env = {
        **{k: v for k, v in env.items() if not k.startswith("SIDECRED_TEST_CA")},
        **ca,
        "SIDECRED_TEST_URL": url + "/validate",
        "SIDECRED_TEST_SERVER_NAME": SERVER_NAME,
    }
    return subprocess.run(
        [sys.executable, *args], env=env, capture_output=True, text=True, timeout=60
    )


def test_hook_pod_gets_the_ca_from_the_serving_secret() -> None:
    container = _hook_container("defaults")
    env = {e["name"]: e["value"] for e in container["env"]}
    (mount,) = container["volumeMounts"]
    assert env["SIDECRED_TEST_CA_FILE"] == mount["mountPath"] + "/ca.crt"
    (pod,) = rendered_hooks("defaults")
    (volume,) = pod["spec"]["volumes"]
    assert volume["secret"]["items"] == [{"key": "ca.crt", "path": "ca.crt"}]
    assert pod["spec"]["automountServiceAccountToken"] is False


def test_hook_pod_without_cert_manager_carries_the_ca_bundle() -> None:
    env = {e["name"]: e["value"] for e in _hook_container("existing-secret")["env"]}
    assert env["SIDECRED_TEST_CA_PEM"] == base64.b64decode(CA_BUNDLE).decode()


def test_hook_passes_against_the_real_webhook(webhook: WebhookProcess) -> None:
    ca_file = str(webhook.cert_dir / "ca.crt")
    result = _run(_hook_container("defaults"), webhook.url, {"SIDECRED_TEST_CA_FILE": ca_file})
    assert result.returncode == 0, result.stderr
    assert "answered the review" in result.stdout and "allowed" in result.stdout


def test_hook_passes_with_the_ca_given_as_pem(webhook: WebhookProcess) -> None:
    pem = (webhook.cert_dir / "ca.crt").read_text()
    result = _run(_hook_container("existing-secret"), webhook.url, {"SIDECRED_TEST_CA_PEM": pem})
    assert result.returncode == 0, result.stderr


def test_hook_fails_against_a_server_with_another_ca(
    webhook: WebhookProcess, tmp_path: Path
) -> None:
    issue_certificates(tmp_path / "other")
    other_ca = str(tmp_path / "other" / "ca.crt")
    result = _run(_hook_container("defaults"), webhook.url, {"SIDECRED_TEST_CA_FILE": other_ca})
    assert result.returncode == 1
    assert "sidecred helm test: no answer" in result.stderr
    assert "CERTIFICATE_VERIFY_FAILED" in result.stderr


def test_hook_fails_when_nothing_answers(webhook: WebhookProcess) -> None:
    ca_file = str(webhook.cert_dir / "ca.crt")
    closed = webhook.url.rsplit(":", 1)[0] + ":1"
    result = _run(_hook_container("defaults"), closed, {"SIDECRED_TEST_CA_FILE": ca_file})
    assert result.returncode == 1 and "no answer" in result.stderr


def test_hook_uses_the_pull_secrets_and_the_release_namespace() -> None:
    (pod,) = rendered_hooks("pull-secrets-and-scheduling")
    assert pod["spec"]["imagePullSecrets"] == [{"name": "registry-credentials"}]
    assert find(rendered_hooks("defaults"), "Pod")["metadata"]["namespace"] == "sidecred"
