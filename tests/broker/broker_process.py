"""Run `sidecred broker` as a real process over TLS against the API stub and an STS."""

from __future__ import annotations

import os
import re
import ssl
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx

from sidecred.certs.cli import main as certs_main
from sidecred.dev.processes import free_port, stop_process, wait_until
from sidecred.pods.settings import Settings
from tests.support.sts import FAKE_ACCESS_KEY_ID, FAKE_SECRET_ACCESS_KEY
from tests.webhook_server.webhook_process import write_kubeconfig

from .pods import broker_config

# The serving certificate names localhost, so a sidecar can verify https://localhost:<port>.
BROKER_HOST = "localhost"
SNI = {"sni_hostname": BROKER_HOST}


def issue_certificates(out: Path, *, force: bool = False) -> None:
    """`sidecred certs` for the broker (CA kept on later runs; serving certificate renewed)."""
    args = ["--service", BROKER_HOST, "--namespace", "sidecred", "--out", str(out)]
    assert certs_main(args + (["--force"] if force else [])) == 0


@dataclass
class BrokerProcess:
    process: subprocess.Popen[bytes]
    port: int
    cert_dir: Path
    log_file: Path
    args: list[str]
    env: dict[str, str]
    config: Settings  # the options it runs with: pods for it are admitted with these

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def client(self) -> httpx.Client:
        """An HTTPS client verifying the broker's certificate against the test CA."""
        context = ssl.create_default_context(cafile=str(self.cert_dir / "ca.crt"))
        return httpx.Client(base_url=self.url, verify=context, timeout=30.0)

    def issue(
        self, token: str | None, http: httpx.Client | None = None, container: str | None = None
    ) -> httpx.Response:
        """POST /v1/credentials (with ?container=<c> for that container's own role)."""
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        params = {} if container is None else {"container": container}
        if http is not None:
            return http.post("/v1/credentials", headers=headers, params=params, extensions=SNI)
        with self.client() as own:
            return own.post("/v1/credentials", headers=headers, params=params, extensions=SNI)

    def metric(self, name: str, **labels: str) -> float:
        """One sample of the broker's /metrics (0 when absent)."""
        with self.client() as http:
            text = http.get("/metrics", extensions=SNI).text
        wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
        pattern = rf"^{re.escape(name)}(?:\{{{re.escape(wanted)}\}})? (\S+)$"
        found = re.search(pattern, text, re.MULTILINE)
        return float(found.group(1)) if found else 0.0

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")

    def stop(self) -> None:
        stop_process(self.process, timeout=15)

    def readyz(self) -> httpx.Response | None:
        """The answer to GET /readyz, or None while nothing listens."""
        if self.process.poll() is not None:
            raise AssertionError(f"broker exited {self.process.returncode}:\n{self.log()}")
        try:
            with self.client() as http:
                return http.get("/readyz", extensions=SNI)
        except httpx.TransportError:
            return None

    def ready(self) -> bool:
        response = self.readyz()
        return response is not None and response.status_code == 200

    def answers(self) -> bool:
        return self.readyz() is not None


def launch(
    tmp: Path,
    args: list[str],
    env: dict[str, str],
    port: int,
    config: Settings,
    *,
    wait: bool = True,
) -> BrokerProcess:
    cert_dir = tmp / "tls"
    log_file = tmp / f"broker-{port}.log"
    with log_file.open("ab") as log:
        process = subprocess.Popen(
            [*(sys.executable, "-m", "sidecred.cli", "broker", "--port", str(port)), *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    broker = BrokerProcess(process, port, cert_dir, log_file, args, env, config)
    try:
        wait_until(broker.ready if wait else broker.answers, timeout=60, what="broker")
    except BaseException:
        broker.stop()
        raise
    return broker


def start_broker(
    tmp: Path, kube_url: str, sts_url: str, *extra: str, wait: bool = True
) -> BrokerProcess:
    """A broker on a free port, its base credentials fake keys, STS at `sts_url`.

    It runs with the options of a webhook injecting broker-mode sidecars that point
    at it (`broker.config`), so pods admitted with those options are canonical.
    """
    cert_dir = tmp / "tls"
    if not (cert_dir / "tls.crt").exists():
        issue_certificates(cert_dir)
    kubeconfig = write_kubeconfig(tmp / "kubeconfig.json", kube_url)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SIDECRED_", "AWS_"))}
    env.update(
        AWS_ACCESS_KEY_ID=FAKE_ACCESS_KEY_ID,
        AWS_SECRET_ACCESS_KEY=FAKE_SECRET_ACCESS_KEY,
        AWS_ENDPOINT_URL_STS=sts_url,
        AWS_EC2_METADATA_DISABLED="true",
    )
    port = free_port()
    config = broker_config((cert_dir / "ca.crt").read_text(), f"https://{BROKER_HOST}:{port}")
    args = [
        *("--tls-cert", str(cert_dir / "tls.crt"), "--tls-key", str(cert_dir / "tls.key")),
        *("--host", "127.0.0.1", "--kubeconfig", str(kubeconfig)),
        *("--base-role-arn", str(config.base_role_arn), "--region", str(config.region)),
        *("--credential-source", "broker", "--broker-url", str(config.broker_url)),
        *("--broker-ca-file", str(cert_dir / "ca.crt")),
        *extra,
    ]
    return launch(tmp, args, env, port, config, wait=wait)


def restart(broker: BrokerProcess, tmp: Path) -> BrokerProcess:
    """Stop the broker and start it again on the same port with the same settings."""
    broker.stop()
    return launch(tmp, broker.args, broker.env, broker.port, broker.config)
