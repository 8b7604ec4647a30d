"""Real AWS SDK clients get the annotated role from a real sidecar.

Every client runs in every token mode. A client whose version supports the
mode must print `assumed-role/<annotated role>/<namespace>.<pod>`; one that
predates it (README.md, "SDK compatibility") must fail to find credentials rather than
get any from the sidecar without its token. Missing tools fail in CI and are
skipped, with the reason, only on a developer machine.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.compat.clients import (
    TOKEN_MODES,
    Client,
    GoClients,
    build_clients,
    format_version,
    outcome,
)
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

Recorder = Callable[[str, tuple[int, ...] | None, str, str], None]


@pytest.fixture
def on_missing(token_mode: str, record_result: Recorder) -> Callable[[Client, str], None]:
    """A client that is not installed is a row of the matrix too."""
    return lambda client, missing: record_result(
        client.label, None, token_mode, f"MISSING: {missing}"
    )


def _unsupported_reason(client: Client, token_mode: str, version: tuple[int, ...]) -> str:
    if version < client.full_uri_since:
        return f"no: {client.note}"
    return f"no: token file needs >= {format_version(client.token_file_since)}; use token mode env"


def test_clients_cover_the_matrix(go_clients: GoClients) -> None:
    assert [client.id for client in build_clients(go_clients)] == CLIENT_IDS


@pytest.mark.parametrize("token_mode", TOKEN_MODES)
@pytest.mark.parametrize("client_id", CLIENT_IDS)
def test_sdk_gets_the_annotated_role(
    client: Client,
    token_mode: str,
    sts: MotoServer,
    sidecars: dict[str, Sidecar],
    tmp_path: Path,
    record_result: Recorder,
) -> None:
    version = client.read_version()
    sidecar = sidecars[token_mode]
    expected_arn = f"arn:aws:sts::{MOTO_ACCOUNT_ID}:assumed-role/{ROLE_NAME}/{sidecar.session_name}"
    run = client.run(sts.url, sidecar.app_env(tmp_path, sts.url), tmp_path)
    detail = outcome(run)

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
