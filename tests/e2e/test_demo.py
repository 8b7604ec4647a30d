"""`sidecred demo` as a user runs it: a real subprocess, exit status and what it prints."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.support import ACCOUNT, EXAMPLES, clean_env

pytestmark = pytest.mark.slow

DEMO_TIMEOUT = 120  # a generous bound for a hung demo; it normally takes a few seconds


def run_demo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sidecred.cli", "demo", *args],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=DEMO_TIMEOUT,
        check=False,
    )


@pytest.mark.parametrize(
    "args",
    [(), ("--sidecar-mode", "container", "--token-mode", "env")],
    ids=["native-file", "container-env"],
)
def test_demo_succeeds_and_prints_the_assumed_role(args: tuple[str, ...]) -> None:
    done = run_demo(*args)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    for step in range(1, 9):
        assert f"[{step}/8]" in out
    assert "FAILED" not in out
    assert (
        f"assumed role ARN:    arn:aws:sts::{ACCOUNT}:assumed-role/shop-reader/shop.shop-reader"
        in out
    )
    assert "session name:        shop.shop-reader" in out
    assert "credential provider: container-role" in out
    assert f'role "arn:aws:iam::{ACCOUNT}:role/admin" is not permitted in namespace "shop"' in out
    assert "every step behaved as expected" in out
    # A role per container: app on the pod's role, backup on its own, metrics on none.
    assert (
        "app: http://127.0.0.1:" in out
        and f"/v1/credentials -> arn:aws:sts::{ACCOUNT}:assumed-role/shop-reader/shop.shop-nightly"
        in out
    )
    assert (
        f"/v1/containers/backup/credentials -> arn:aws:sts::{ACCOUNT}:assumed-role/shop-backup/"
        "shop.shop-nightly.backup" in out
    )
    assert "metrics: no credential env, no token" in out
    assert "app's token on backup's URI: HTTP 403" in out
    # The app's env never carries keys or the sidecar's settings.
    app_env = next(line for line in out.splitlines() if "app env (names only)" in line)
    assert "AWS_ACCESS_KEY_ID" not in app_env and "SIDECRED_" not in app_env


def test_demo_exits_1_and_says_what_failed(tmp_path: Path) -> None:
    """A namespace that permits no shop role: the allowed pod is denied, so the demo fails."""
    examples = tmp_path / "examples"
    shutil.copytree(EXAMPLES, examples)
    namespace = examples / "namespace-shop.yaml"
    namespace.write_text(namespace.read_text().replace("role/shop-[^/]*", "role/nothing-[^/]*"))
    done = run_demo("--examples", str(examples))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "FAILED step 3" in done.stdout
    assert "/mutate denied the allowed pod" in done.stdout
    assert "not permitted in namespace" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr
