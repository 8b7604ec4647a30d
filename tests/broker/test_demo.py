"""`sidecred demo --credential-source broker` as a user runs it: exit status and what it prints."""

from __future__ import annotations

import pytest

from tests.e2e.support import ACCOUNT
from tests.e2e.test_demo import run_demo

pytestmark = pytest.mark.slow


def test_the_broker_demo_shows_the_assumed_role_and_the_revocation() -> None:
    done = run_demo("--credential-source", "broker")
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    for step in range(1, 10):
        assert f"[{step}/9]" in out
    assert "FAILED" not in out
    assert "sidecred broker --tls-cert" in out and "--credential-source broker" in out
    reader = f"arn:aws:iam::{ACCOUNT}:role/shop-reader"
    assert (
        f"assumed role ARN:    arn:aws:sts::{ACCOUNT}:assumed-role/shop-reader/shop.shop-reader"
        in out
    )
    refusal = f'RoleNotPermitted: sidecred: role "{reader}" is not permitted in namespace "shop"'
    assert f"POST /v1/credentials with the pod's token: HTTP 403 {refusal}" in out
    assert f"sidecar /readyz: 503 not ready: {refusal}" in out
    assert "every step behaved as expected" in out
    # A role per container, each issued by the broker.
    assert f"-> arn:aws:sts::{ACCOUNT}:assumed-role/shop-backup/shop.shop-nightly.backup" in out
    # The broker's base credentials never reach the application.
    app_env = next(line for line in out.splitlines() if "app env (names only)" in line)
    assert "AWS_ACCESS_KEY_ID" not in app_env and "SIDECRED_" not in app_env
