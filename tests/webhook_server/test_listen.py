"""The webhook and the broker listen on both address families unless told an address."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from sidecred.dev.kube_stub import KubeApiStub
from tests.support.listening import answers, assert_answers_on_both_families, needs_ipv6

from .webhook_process import SERVER_NAME, start_webhook


@needs_ipv6
def test_by_default_the_webhook_answers_on_ipv4_and_ipv6(stub: KubeApiStub, tmp_path: Path) -> None:
    webhook = start_webhook(tmp_path, stub.url, host="")
    try:
        assert_answers_on_both_families(webhook, SERVER_NAME)
    finally:
        webhook.stop()


@needs_ipv6
def test_a_named_address_is_that_address_only(stub: KubeApiStub, tmp_path: Path) -> None:
    webhook = start_webhook(tmp_path, stub.url, host="::1")
    try:
        ca = webhook.cert_dir / "ca.crt"
        assert answers("[::1]", webhook.port, ca, SERVER_NAME)
        with pytest.raises(httpx.ConnectError):
            answers("127.0.0.1", webhook.port, ca, SERVER_NAME)
    finally:
        webhook.stop()
