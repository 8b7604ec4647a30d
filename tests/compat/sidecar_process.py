"""A real `sidecred sidecar` process, configured as the webhook would for one pod.

The compatibility fixtures start one per token mode; `Sidecar.app_env` is the
env of that pod's patched application container.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from sidecred.dev.processes import free_port, stop_process
from sidecred.sidecar import config as contract
from tests.compat.clients import REPO
from tests.support.sts import MOTO_REGION, MotoServer

ROLE_NAME = "compat-reader"
NAMESPACE = "shop"
READY_TIMEOUT = 60.0  # seconds for a sidecar to hold credentials from a local moto


@dataclass
class Sidecar:
    """A running `sidecred sidecar` as the webhook would configure it for one pod."""

    token_mode: str
    pod_name: str
    role_arn: str
    port: int
    health_port: int
    token_file: Path | None
    auth_token: str | None
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def session_name(self) -> str:
        return f"{NAMESPACE}.{self.pod_name}"

    def app_env(self, workdir: Path, sts_url: str) -> dict[str, str]:
        """The env of a patched app container, plus test plumbing aiming STS at moto.

        Built from nothing (no os.environ): no static keys, no profile, an empty
        config and credentials file, a fresh HOME, and IMDS disabled so that an
        SDK that ignores the container endpoint fails instead of leaving loopback.
        """
        home = workdir / "home"
        home.mkdir(parents=True, exist_ok=True)
        config_file, credentials_file = workdir / "aws-config", workdir / "aws-credentials"
        config_file.touch()
        credentials_file.touch()
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "HOME": str(home),
            "AWS_CONFIG_FILE": str(config_file),
            "AWS_SHARED_CREDENTIALS_FILE": str(credentials_file),
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_PAGER": "",
            # What the webhook adds to an app container:
            "AWS_CONTAINER_CREDENTIALS_FULL_URI": contract.credentials_uri(self.port),
            "AWS_REGION": MOTO_REGION,
            "AWS_DEFAULT_REGION": MOTO_REGION,
            # Test plumbing: STS is the local emulator.
            "AWS_ENDPOINT_URL_STS": sts_url,
        }
        if self.token_mode == "file":
            env["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"] = str(self.token_file)
        else:
            env["AWS_CONTAINER_AUTHORIZATION_TOKEN"] = str(self.auth_token)
        return env

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def _readyz(health_port: int) -> tuple[int, str]:
    url = f"http://127.0.0.1:{health_port}/readyz"
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status, resp.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")
    except OSError as exc:
        return 0, str(exc)


def start_sidecar(token_mode: str, sts: MotoServer, role_arn: str, workdir: Path) -> Sidecar:
    """Start the sidecar as a real process with the env the webhook writes; wait until ready."""
    pod_name = f"cart-{token_mode}-7d9f"
    token_dir = workdir / "sidecred-token"  # the memory emptyDir shared with the app
    token_dir.mkdir(parents=True)
    web_identity = workdir / "sa-token"  # the projected service-account token
    web_identity.write_text("eyJhbGciOiJSUzI1NiJ9.compat.signature")
    port, health_port = free_port(), free_port()
    auth_token = secrets.token_urlsafe(32) if token_mode == "env" else None
    token_file = token_dir / "token" if token_mode == "file" else None
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(workdir),
        "PYTHONPATH": str(REPO),
        contract.ENV_ROLE_ARN: role_arn,
        contract.ENV_CREDENTIAL_SOURCE: "web-identity",
        contract.ENV_SESSION_DURATION: "3600",
        contract.ENV_REGION: MOTO_REGION,
        contract.ENV_PORT: str(port),
        contract.ENV_HEALTH_PORT: str(health_port),
        contract.ENV_TOKEN_MODE: token_mode,
        contract.ENV_WEB_IDENTITY_TOKEN_FILE: str(web_identity),
        contract.ENV_SIDECAR_MODE: "native",
        contract.ENV_POD_NAME: pod_name,
        contract.ENV_POD_NAMESPACE: NAMESPACE,
        contract.ENV_POD_UID: "3f1c2d4e-0000-4000-8000-00000000c0de",
        contract.ENV_SERVICE_ACCOUNT: "cart",
        "AWS_ENDPOINT_URL_STS": sts.url,  # test plumbing
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    if token_file is not None:
        env[contract.ENV_TOKEN_FILE] = str(token_file)
    if auth_token is not None:
        env[contract.ENV_AUTH_TOKEN] = auth_token
    log_path = workdir / "sidecar.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "sidecred.cli", "sidecar"],
            env=env,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    sidecar = Sidecar(
        token_mode=token_mode,
        pod_name=pod_name,
        role_arn=role_arn,
        port=port,
        health_port=health_port,
        token_file=token_file,
        auth_token=auth_token,
        process=process,
        log_path=log_path,
    )
    deadline = time.monotonic() + READY_TIMEOUT
    status, body = _readyz(health_port)
    while status != 200:
        if process.poll() is not None or time.monotonic() > deadline:
            stop_sidecar(sidecar)
            raise RuntimeError(
                f"sidecar (token mode {token_mode}) not ready: readyz {status} {body!r}; "
                f"exit code {process.returncode}; log:\n{sidecar.log_text()}"
            )
        time.sleep(0.05)  # poll interval while waiting for a condition
        status, body = _readyz(health_port)
    return sidecar


def stop_sidecar(sidecar: Sidecar) -> None:
    stop_process(sidecar.process)
