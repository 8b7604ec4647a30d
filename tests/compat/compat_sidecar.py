"""A real `sidecred sidecar` process, configured by the webhook's own patch for one pod.

The compatibility fixtures start one per token mode; `Sidecar.app_env` is the
env of that pod's patched application container.
"""

from __future__ import annotations

import os
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from sidecred.dev.processes import stop_process, wait_until
from sidecred.sidecar import config as contract
from tests.compat.clients import REPO
from tests.sidecar.sidecar_process import start_sidecar as start_sidecar_process
from tests.support import injected_sidecar
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
    config = injected_sidecar.local_config(token_mode=token_mode)
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(workdir),
        "PYTHONPATH": str(REPO),
        "AWS_ENDPOINT_URL_STS": sts.url,  # test plumbing
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    env = injected_sidecar.sidecar_env(
        workdir / "pod", role_arn, config, environment, pod_name=pod_name
    )
    token_file = env.get(contract.ENV_TOKEN_FILE)
    log_path = workdir / "sidecar.log"
    process = start_sidecar_process(env, log_path).process
    sidecar = Sidecar(
        token_mode=token_mode,
        pod_name=pod_name,
        role_arn=role_arn,
        port=int(env[contract.ENV_PORT]),
        health_port=int(env[contract.ENV_HEALTH_PORT]),
        token_file=Path(token_file) if token_file else None,
        auth_token=env.get(contract.ENV_AUTH_TOKEN),
        process=process,
        log_path=log_path,
    )
    try:
        wait_until(
            lambda: _readyz(sidecar.health_port)[0] == 200,
            READY_TIMEOUT,
            f"sidecar (token mode {token_mode}) readyz 200",
            0.05,
            process,
        )
    except AssertionError as exc:
        stop_sidecar(sidecar)
        status, body = _readyz(sidecar.health_port)
        raise RuntimeError(
            f"sidecar (token mode {token_mode}) not ready: {exc}; readyz {status} {body!r}; "
            f"exit code {process.returncode}; log:\n{sidecar.log_text()}"
        ) from None
    return sidecar


def stop_sidecar(sidecar: Sidecar) -> None:
    stop_process(sidecar.process)
