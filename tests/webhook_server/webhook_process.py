"""Run `sidecred webhook` as a real process over TLS, and talk to it as the API server does."""

from __future__ import annotations

import base64
import json
import os
import ssl
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx

from sidecred.certs.cli import main as certs_main
from sidecred.dev.kube_stub import write_kubeconfig
from sidecred.dev.processes import free_port, stop_process, wait_until
from sidecred.webhook.review import admission_review, pod_request

SERVICE, NAMESPACE = "sidecred", "sidecred-system"
SERVER_NAME = f"{SERVICE}.{NAMESPACE}.svc"
BASE_ROLE_ARN = "arn:aws:iam::111122223333:role/"


def issue_certificates(out: Path, *, force: bool = False) -> None:
    args = ["--service", SERVICE, "--namespace", NAMESPACE, "--out", str(out)]
    assert certs_main(args + (["--force"] if force else [])) == 0


@dataclass
class WebhookProcess:
    process: subprocess.Popen
    port: int
    cert_dir: Path
    log_file: Path
    host: str = "127.0.0.1"  # where it is reached ("" listens everywhere: reached on 127.0.0.1)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host or "127.0.0.1"
        return f"https://{host}:{self.port}"

    def client(self, ca_file: Path | None = None) -> httpx.Client:
        """An HTTPS client that verifies the certificate against our CA for the service name."""
        context = ssl.create_default_context(cafile=str(ca_file or self.cert_dir / "ca.crt"))
        return httpx.Client(
            base_url=self.url, verify=context, timeout=10.0, headers={"Connection": "close"}
        )

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")

    def stop(self) -> None:
        stop_process(self.process, timeout=15)


SNI = {"sni_hostname": SERVER_NAME}


def start_webhook(tmp: Path, kube_url: str, *extra: str, host: str = "127.0.0.1") -> WebhookProcess:
    cert_dir = tmp / "tls"
    if not (cert_dir / "tls.crt").exists():
        issue_certificates(cert_dir)
    kubeconfig = write_kubeconfig(tmp / "kubeconfig.json", kube_url)
    port = free_port()
    log_file = tmp / "webhook.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIDECRED_")}
    with log_file.open("wb") as log:
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "sidecred.cli", "webhook"),
                *("--tls-cert", str(cert_dir / "tls.crt"), "--tls-key", str(cert_dir / "tls.key")),
                *("--host", host, "--port", str(port), "--kubeconfig", str(kubeconfig)),
                *("--base-role-arn", BASE_ROLE_ARN),
                *extra,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    webhook = WebhookProcess(process, port, cert_dir, log_file, host)

    def answers() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"webhook exited {process.returncode}:\n{webhook.log()}")
        try:
            with webhook.client() as http:
                return http.get("/healthz", extensions=SNI).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(answers, timeout=30, what="webhook /healthz")
    except BaseException:
        webhook.stop()
        raise
    return webhook


def pod(role: str | None, *, name: str = "web-7d4b9c-x2k4q", namespace: str = "shop") -> dict:
    annotations = {} if role is None else {"iam.amazonaws.com/role": role}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": "web-7d4b9c-",
            "namespace": namespace,
            "labels": {"app": "web", "pod-template-hash": "7d4b9c"},
            "annotations": annotations,
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": "web-7d4b9c",
                    "uid": "3f0c7f1e-8d0a-4d3c-9a43-4f2f1c0d9b11",
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "serviceAccountName": "web",
            "containers": [
                {
                    "name": "app",
                    "image": "python:3.12-slim",
                    "command": ["python", "-m", "http.server"],
                    "resources": {},
                }
            ],
            "restartPolicy": "Always",
        },
    }


def review(obj: dict, *, operation: str = "CREATE", namespace: str = "shop") -> dict:
    return dict(admission_review(pod_request(obj, operation=operation, namespace=namespace)))


def post_review(http: httpx.Client, path: str, body: dict) -> dict:
    response = http.post(path, json=body, extensions=SNI)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["apiVersion"] == "admission.k8s.io/v1"
    assert answer["kind"] == "AdmissionReview"
    assert answer["response"]["uid"] == body["request"]["uid"]
    return answer["response"]


def decode_patch(response: dict) -> list[dict]:
    assert response["patchType"] == "JSONPatch"
    return json.loads(base64.b64decode(response["patch"]))
