"""Run `sidecred sidecar` as a real process with the env the webhook would give it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sidecred.dev.processes import POLL_SECONDS, wait_until
from tests.support import injected_sidecar
from tests.support.sts import FAKE_ACCESS_KEY_ID, FAKE_SECRET_ACCESS_KEY, MOTO_REGION

ROLE_ARN = "arn:aws:iam::123456789012:role/reader"
# What the webhook generates for token mode env, fixed here so tests can send it.
WEBHOOK_AUTH_TOKEN = "webhook-generated-token-Zm9vYmFyYmF6cXV4"
REPO = Path(__file__).resolve().parents[2]
# How long a test waits for something the sidecar does (readiness, a retry, a drain).
WAIT_SECONDS = 30.0


def sidecar_env(
    tmp: Path,
    sts_url: str,
    *,
    source: str = "web-identity",
    token_mode: str = "file",  # noqa: S107 (a mode name, not a password)
    annotations: dict[str, str] | None = None,
    webhook: dict[str, Any] | None = None,
    containers: tuple[str, ...] = ("app",),
    **overrides: str,
) -> dict[str, str]:
    """The sidecar's env from the webhook's own patch, resolved as a kubelet would.

    `tests.support.injected_sidecar` runs the pod through the webhook and the
    local pod runner (volumes in a new directory under `tmp`); the
    surroundings add PATH, the STS emulator and a 1 s retry cap. `webhook` sets
    more of the webhook's options (the broker's URL and CA); `overrides`
    replace what the webhook wrote, for tests of bad settings.
    """
    (tmp / "home").mkdir(exist_ok=True)
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp / "home"),
        "PYTHONPATH": str(REPO),
        "SIDECRED_RETRY_CAP_SECONDS": "1",
        "AWS_ENDPOINT_URL_STS": sts_url,
        # No shared config files from the machine running the tests.
        "AWS_CONFIG_FILE": str(tmp / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp / "no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    if source == "assume-role":
        environment["AWS_ACCESS_KEY_ID"] = FAKE_ACCESS_KEY_ID
        environment["AWS_SECRET_ACCESS_KEY"] = FAKE_SECRET_ACCESS_KEY
    config = injected_sidecar.local_config(
        credential_source=source, token_mode=token_mode, **(webhook or {})
    )
    env = injected_sidecar.sidecar_env(
        Path(tempfile.mkdtemp(prefix="pod-", dir=tmp)),  # one pod per call
        ROLE_ARN,
        config,
        environment,
        annotations=annotations,
        auth_token=WEBHOOK_AUTH_TOKEN,
        containers=containers,
    )
    env.update(overrides)
    return env


def http_get(
    url: str, headers: dict[str, str] | None = None, timeout: float = 5.0
) -> tuple[int, bytes]:
    """(status, body) of a GET; (0, b"") when nothing answers."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


@dataclass
class SidecarProcess:
    process: subprocess.Popen[bytes]
    env: dict[str, str]
    log_path: Path

    @property
    def port(self) -> int:
        return int(self.env["SIDECRED_PORT"])

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.env['SIDECRED_HEALTH_PORT']}"

    @property
    def credentials_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/credentials"

    def token(self) -> str:
        if self.env["SIDECRED_TOKEN_MODE"] == "env":
            return self.env["SIDECRED_AUTH_TOKEN"]
        return Path(self.env["SIDECRED_TOKEN_FILE"]).read_text()

    def readyz(self) -> tuple[int, str]:
        status, body = http_get(self.health_url + "/readyz")
        return status, body.decode()

    def credentials(self, token: str | None = None) -> tuple[int, dict[str, str]]:
        headers = {"Authorization": token} if token is not None else {}
        status, body = http_get(self.credentials_url, headers)
        return status, (json.loads(body) if body else {})

    def metric(self, line_prefix: str) -> float:
        _, body = http_get(self.health_url + "/metrics")
        for line in body.decode().splitlines():
            if line.startswith(line_prefix + " "):
                return float(line.split()[-1])
        return 0.0

    def log(self) -> str:
        return self.log_path.read_text()

    def log_records(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.log().splitlines() if line.strip()]

    def wait_ready(self, timeout: float = WAIT_SECONDS, interval: float = POLL_SECONDS) -> None:
        """Until /readyz is 200; fails at once if the process exits. A failure shows the last
        /readyz answer and the sidecar's log as they are then."""
        try:
            wait_until(
                lambda: self.readyz()[0] == 200, timeout, "readyz 200", interval, self.process
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}; /readyz: {self.readyz()!r}; log:\n{self.log()}") from None

    def signal(self, sig: int = signal.SIGTERM) -> None:
        self.process.send_signal(sig)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


def run_cli(*args: str, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    """`sidecred ARGS` from this checkout, run to the end with its output captured."""
    command = [sys.executable, "-m", "sidecred.cli", *args]
    return subprocess.run(
        command, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False
    )


def start_sidecar(env: dict[str, str], log_path: Path) -> SidecarProcess:
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "sidecred.cli", "sidecar"],
            env=env,
            stdout=log,
            stderr=log,
            cwd=REPO,
        )
    return SidecarProcess(process, env, log_path)


def app_environment(sidecar: SidecarProcess, tmp: Path) -> dict[str, str]:
    """ONLY what the webhook gives an app container (plus PATH/HOME to run Python)."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp),
        "AWS_CONFIG_FILE": str(tmp / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp / "no-aws-credentials"),
        "AWS_CONTAINER_CREDENTIALS_FULL_URI": sidecar.credentials_url,
        "AWS_ENDPOINT_URL_STS": sidecar.env["AWS_ENDPOINT_URL_STS"],
        "AWS_REGION": MOTO_REGION,
        "AWS_DEFAULT_REGION": MOTO_REGION,
    }
    if sidecar.env["SIDECRED_TOKEN_MODE"] == "file":
        env["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"] = sidecar.env["SIDECRED_TOKEN_FILE"]
    else:
        env["AWS_CONTAINER_AUTHORIZATION_TOKEN"] = sidecar.env["SIDECRED_AUTH_TOKEN"]
    return env


APP_SCRIPT = """
import sys, boto3
sts = boto3.client("sts")
arns = {sts.get_caller_identity()["Arn"] for _ in range(int(sys.argv[1]))}
print("\\n".join(sorted(arns)))
"""


def run_app(sidecar: SidecarProcess, tmp: Path, calls: int = 1) -> subprocess.CompletedProcess[str]:
    """A separate boto3 process using the container credential provider, as an app would."""
    return subprocess.run(
        [sys.executable, "-c", APP_SCRIPT, str(calls)],
        env=app_environment(sidecar, tmp),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def sidecar_factory(tmp_path: Path) -> Iterator[Callable[..., SidecarProcess]]:
    """Start sidecars (`factory(env)`); every one is killed at teardown."""
    started: list[SidecarProcess] = []

    def factory(env: dict[str, str]) -> SidecarProcess:
        proc = start_sidecar(env, tmp_path / f"sidecar-{len(started)}.log")
        started.append(proc)
        return proc

    yield factory
    for proc in started:
        proc.stop()
