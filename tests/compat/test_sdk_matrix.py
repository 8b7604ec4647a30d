"""Real AWS SDK clients get the annotated role from a real sidecar.

Every client runs in every token mode. A client whose version supports the
mode must print `assumed-role/<annotated role>/<namespace>.<pod>`; one that
predates it (README.md, "SDK compatibility") must fail to find credentials rather than
get any from the sidecar without its token. Missing tools fail in CI and are
skipped, with the reason, only on a developer machine.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.compat.clients import TOKEN_MODES, Client, GoClients, build_clients, format_version
from tests.compat.compat_sidecar import ROLE_NAME, Sidecar
from tests.support.sts import MOTO_ACCOUNT_ID, MotoServer

pytestmark = [pytest.mark.compat, pytest.mark.slow]

CLIENT_IDS = [
    "boto3-current",
    "boto3-1.34.41",
    "awscli-v1",
    "js-v3",
    "js-v3-3.458.0",
    "awscli-v2-debian",
    "go-v1-debian",
    "go-v2-debian",
    "js-v2",
    "ruby-core-debian",
]
CLIENT_TIMEOUT = 120  # seconds; a bound for a hung client, not a timing assertion

Recorder = Callable[[str, tuple[int, ...] | None, str, str], None]


def _client(client_id: str, go_clients: GoClients) -> Client:
    return {client.id: client for client in build_clients(go_clients)}[client_id]


def _unsupported_reason(client: Client, token_mode: str, version: tuple[int, ...]) -> str:
    if version < client.full_uri_since:
        return f"no: {client.note}"
    return f"no: token file needs >= {format_version(client.token_file_since)}; use token mode env"


def test_clients_cover_the_matrix(go_clients: GoClients) -> None:
    assert [client.id for client in build_clients(go_clients)] == CLIENT_IDS


@pytest.mark.parametrize("token_mode", TOKEN_MODES)
@pytest.mark.parametrize("client_id", CLIENT_IDS)
def test_sdk_gets_the_annotated_role(
    client_id: str,
    token_mode: str,
    go_clients: GoClients,
    sts: MotoServer,
    sidecars: dict[str, Sidecar],
    tmp_path: Path,
    record_result: Recorder,
) -> None:
    client = _client(client_id, go_clients)
    missing = client.missing()
    if missing:
        record_result(client.label, None, token_mode, f"MISSING: {missing}")
        if os.environ.get("CI"):
            pytest.fail(f"{client.label}: {missing}")
        pytest.skip(f"{client.label}: {missing} (CI unset)")
    version = client.read_version()
    sidecar = sidecars[token_mode]
    expected_arn = f"arn:aws:sts::{MOTO_ACCOUNT_ID}:assumed-role/{ROLE_NAME}/{sidecar.session_name}"

    run = subprocess.run(
        client.command(f"{sts.url}"),
        env=sidecar.app_env(tmp_path, sts.url),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=CLIENT_TIMEOUT,
    )
    detail = f"exit {run.returncode}\nstdout: {run.stdout}\nstderr: {run.stderr[-3000:]}"

    if client.expected_to_work(token_mode, version):
        ok = run.returncode == 0 and run.stdout.strip() == expected_arn
        record_result(client.label, version, token_mode, "ok" if ok else "FAILED")
        assert run.returncode == 0, detail
        assert run.stdout.strip() == expected_arn, detail
    else:
        # An SDK too old for this mode gets nothing from the sidecar and says so.
        refused = (
            run.returncode != 0
            and ROLE_NAME not in run.stdout
            and "credential" in run.stderr.lower()
        )
        reason = _unsupported_reason(client, token_mode, version)
        record_result(client.label, version, token_mode, reason if refused else "UNEXPECTED")
        assert run.returncode != 0, detail
        assert ROLE_NAME not in run.stdout, detail
        assert "credential" in run.stderr.lower(), detail
