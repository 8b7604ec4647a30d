"""Fixtures of the real-SDK compatibility matrix.

One moto_server (the STS emulator) and one sidecar process per token mode serve
every client of the module; the Go clients are built once per session. Each
client then runs with only the env a patched application container gets.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.compat.clients import (
    GO_SDK_SRC,
    GO_SDK_V2_SRC,
    REPO,
    VENVS,
    Client,
    GoClients,
    build_clients,
    format_version,
)
from tests.compat.compat_sidecar import ROLE_NAME, Sidecar, start_sidecar, stop_sidecar
from tests.support.session_records import COMPAT
from tests.support.sts import MotoServer, create_role, start_moto, stop_moto


@pytest.fixture(scope="module")
def sts() -> Iterator[MotoServer]:
    server = start_moto()
    yield server
    stop_moto(server)


@pytest.fixture(scope="module")
def role_arn(sts: MotoServer) -> str:
    return create_role(sts.url, ROLE_NAME)


@pytest.fixture(scope="module")
def sidecars(
    sts: MotoServer, role_arn: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Sidecar]]:
    """One sidecar per token mode, started on first use and shared by the module."""
    started: dict[str, Sidecar] = {}

    class Lazy(dict[str, Sidecar]):
        def __missing__(self, mode: str) -> Sidecar:
            workdir = tmp_path_factory.mktemp(f"sidecar-{mode}")
            started[mode] = self[mode] = start_sidecar(mode, sts, role_arn, workdir)
            return started[mode]

    yield Lazy()
    for sidecar in started.values():
        stop_sidecar(sidecar)


def build_go_client(package: str, out: Path, sdk_src: Path) -> Path:
    """Build `package` (a tests/compat directory) offline from Debian's SDK sources (GOPATH mode).

    Returns `out`, which does not exist when Go or the SDK sources are absent,
    so the test reports the tool as missing; a compiler error fails loudly.
    """
    go = shutil.which("go")
    if go is None or not sdk_src.is_dir():
        return out
    # Reuse the cache install-sdks warmed, so the build takes a second.
    cache = VENVS / "go-cache" if VENVS.is_dir() else Path(tempfile.mkdtemp(prefix="go-cache-"))
    env = {
        **os.environ,
        "GO111MODULE": "off",
        "GOPATH": "/usr/share/gocode",
        "GOFLAGS": "",
        "GOCACHE": str(cache),
    }
    build = subprocess.run(
        [go, "build", "-o", str(out), f"./tests/compat/{package}"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if build.returncode != 0:
        pytest.fail(f"building the Go client tests/compat/{package} failed:\n{build.stderr}")
    return out


@pytest.fixture(scope="session")
def go_clients(tmp_path_factory: pytest.TempPathFactory) -> GoClients:
    """The Go SDK v1 and v2 clients, built once per session."""
    out = tmp_path_factory.mktemp("go")
    return GoClients(
        v1=build_go_client("go", out / "whoami-go", GO_SDK_SRC),
        v2=build_go_client("go-v2", out / "whoami-go-v2", GO_SDK_V2_SRC),
    )


@pytest.fixture
def on_missing() -> Callable[[Client, str], None]:
    """What a test does with a client that is not installed, before it fails or skips."""
    return lambda client, missing: None


@pytest.fixture
def client(
    client_id: str, go_clients: GoClients, on_missing: Callable[[Client, str], None]
) -> Client:
    """The client the test is parametrised with (`client_id`). Not installed: a failure
    in CI, a skip with the reason on a developer machine."""
    found = {c.id: c for c in build_clients(go_clients)}[client_id]
    missing = found.missing()
    if missing:
        on_missing(found, missing)
        if os.environ.get("CI"):
            pytest.fail(f"{found.label}: {missing}")
        pytest.skip(f"{found.label}: {missing} (CI unset)")
    return found


# --- results summary -------------------------------------------------------------


@pytest.fixture
def record_result() -> Callable[[str, tuple[int, ...] | None, str, str], None]:
    """Record one matrix cell for the end-of-session summary (tests/support/session_records.py)."""

    def record(label: str, version: tuple[int, ...] | None, token_mode: str, result: str) -> None:
        COMPAT.append([label, format_version(version) if version else "?", token_mode, result])

    return record
