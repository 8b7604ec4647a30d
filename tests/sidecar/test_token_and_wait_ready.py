"""The auth token file, and `sidecred sidecar --wait-ready` (the container-mode postStart hook)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sidecred.sidecar.token_file import generate_token, write_token_file
from tests.sidecar.sidecar_process import REPO, run_cli, sidecar_env
from tests.support.sts import free_port


def test_generated_tokens_are_long_urlsafe_and_distinct():
    tokens = {generate_token() for _ in range(100)}
    assert len(tokens) == 100
    for token in tokens:
        assert len(token) >= 43
        assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def test_write_replaces_atomically_with_mode_0644(tmp_path: Path):
    path = tmp_path / "token"
    path.write_text("old")
    write_token_file(str(path), "new-token")
    assert path.read_bytes() == b"new-token"
    assert path.stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["token"]


def wait_ready(env: dict[str, str], timeout: str) -> subprocess.CompletedProcess[str]:
    return run_cli("sidecar", "--wait-ready", "--timeout", timeout, env=env, timeout=120)


def test_wait_ready_exits_0_once_ready(moto_sts_module, sidecar_factory, tmp_path: Path):
    env = sidecar_env(tmp_path, moto_sts_module.url)
    sidecar = sidecar_factory(env)
    result = wait_ready(env, "60")
    assert result.returncode == 0, result.stderr
    assert sidecar.readyz()[0] == 200


def test_wait_ready_times_out_with_the_last_readyz_body(
    scripted_sts_factory, sidecar_factory, tmp_path: Path
):
    from tests.support.scripted_sts import access_denied

    sts = scripted_sts_factory(access_denied)
    env = sidecar_env(tmp_path, sts.url)
    sidecar_factory(env)
    result = wait_ready(env, "3")
    assert result.returncode == 1
    assert "not ready" in result.stderr
    # the last body is readyz's (once the listener is up it names the STS refusal)
    assert "AccessDenied" in result.stderr or "health port not answering" in result.stderr


def test_wait_ready_when_nothing_listens(tmp_path: Path):
    env = sidecar_env(tmp_path, "http://127.0.0.1:1")
    env["SIDECRED_HEALTH_PORT"] = str(free_port())
    result = wait_ready(env, "0.5")
    assert result.returncode == 1
    assert "health port not answering" in result.stderr


def test_wait_ready_does_not_import_botocore(tmp_path: Path):
    env = sidecar_env(tmp_path, "http://127.0.0.1:1")
    env["SIDECRED_HEALTH_PORT"] = str(free_port())
    code = (
        "import sys; from sidecar.main import wait_ready; wait_ready(0.0); "
        "print('botocore' in sys.modules, 'asyncio' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["False", "False"]
