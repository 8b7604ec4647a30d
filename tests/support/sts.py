"""An STS emulator for tests: `moto_server` on a free 127.0.0.1 port.

Plain functions (`start_moto`, `stop_moto`, `create_role`, `free_port`) for
any caller, and pytest fixtures built on them:

    from tests.support.sts import moto_sts  # noqa: F401  (re-export the fixture)

    def test_x(moto_sts):
        role_arn = create_role(moto_sts.url, "reader")

`moto_sts_factory` starts extra servers (or one on a reserved port, e.g. to
bring STS up after a sidecar has started); all are stopped at teardown.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from sidecred.dev.processes import free_port, stop_process, wait_until

MOTO_ACCOUNT_ID = "123456789012"  # moto's default account
MOTO_REGION = "us-east-1"
# moto accepts any keys; these only need to look like keys.
FAKE_ACCESS_KEY_ID = "AKIAIOSFODNN7EXAMPLE"
FAKE_SECRET_ACCESS_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"

_TRUST_POLICY = (
    '{"Version":"2012-10-17","Statement":[{"Effect":"Allow",'
    '"Principal":{"AWS":"*"},"Action":["sts:AssumeRole","sts:AssumeRoleWithWebIdentity",'
    '"sts:TagSession","sts:SetSourceIdentity"]}]}'
)


@dataclass
class MotoServer:
    """A running moto_server subprocess."""

    url: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: str = field(default="")

    def stop(self) -> None:
        stop_moto(self)


def _moto_command() -> list[str]:
    exe = shutil.which("moto_server")
    if exe:
        return [exe]
    return [sys.executable, "-m", "moto.server"]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/moto-api/", timeout=1) as resp:
            return resp.status < 500
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except OSError:
        return False


def start_moto(port: int | None = None, *, timeout: float = 30.0, log_path: str = "") -> MotoServer:
    """Start moto_server on 127.0.0.1:`port` (a free one if None) and wait until it answers."""
    port = free_port() if port is None else port
    url = f"http://127.0.0.1:{port}"
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL
    env = dict(os.environ)
    env.setdefault("MOTO_ALLOW_NONEXISTENT_REGION", "true")
    try:
        process = subprocess.Popen(
            [*_moto_command(), "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    finally:
        if log_path:
            out.close()  # type: ignore[union-attr]
    server = MotoServer(url=url, port=port, process=process, log_path=log_path)
    try:
        wait_until(lambda: _answers(url), timeout, f"moto_server on {url}", 0.05, process)
    except AssertionError:
        stop_moto(server)
        raise
    return server


def stop_moto(server: MotoServer) -> None:
    """Stop the server and wait for it to exit (idempotent)."""
    stop_process(server.process)


def create_role(
    sts_url: str, name: str, *, path: str = "/", trust_policy: str = _TRUST_POLICY
) -> str:
    """Create IAM role `name` in the moto server at `sts_url`; return its ARN."""
    import boto3  # tests only; keeps this module importable without boto3 at collection

    iam = boto3.client(
        "iam",
        endpoint_url=sts_url,
        region_name=MOTO_REGION,
        aws_access_key_id=FAKE_ACCESS_KEY_ID,
        aws_secret_access_key=FAKE_SECRET_ACCESS_KEY,
    )
    role = iam.create_role(RoleName=name, Path=path, AssumeRolePolicyDocument=trust_policy)
    return str(role["Role"]["Arn"])


@pytest.fixture
def moto_sts_factory() -> Iterator[Callable[..., MotoServer]]:
    """Start moto servers on demand (`factory()` or `factory(port=reserved)`); all stop at teardown."""
    servers: list[MotoServer] = []

    def factory(port: int | None = None, **kwargs: object) -> MotoServer:
        server = start_moto(port, **kwargs)  # type: ignore[arg-type]
        servers.append(server)
        return server

    yield factory
    for server in servers:
        stop_moto(server)


@pytest.fixture
def moto_sts(moto_sts_factory: Callable[..., MotoServer]) -> MotoServer:
    """One moto_server for the test, stopped afterwards."""
    return moto_sts_factory()


@pytest.fixture(scope="module")
def moto_sts_module() -> Iterator[MotoServer]:
    """One moto_server shared by a test module (moto state persists between its tests)."""
    server = start_moto()
    yield server
    stop_moto(server)
