"""The webhook and the broker listen on both address families unless told an address."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

import httpx
import pytest

from sidecred.dev.kube_stub import KubeApiStub

from .webhook_process import SERVER_NAME, start_webhook


def has_ipv6_loopback() -> bool:
    try:
        with socket.create_server(("::1", 0), family=socket.AF_INET6):
            return True
    except OSError:
        return False


def answers(host: str, port: int, ca: Path, server_name: str) -> bool:
    context = ssl.create_default_context(cafile=str(ca))
    with httpx.Client(verify=context, timeout=10) as http:
        response = http.get(
            f"https://{host}:{port}/healthz", extensions={"sni_hostname": server_name}
        )
    return response.status_code == 200


needs_ipv6 = pytest.mark.skipif(not has_ipv6_loopback(), reason="this machine has no ::1")


@needs_ipv6
def test_by_default_the_webhook_answers_on_ipv4_and_ipv6(stub: KubeApiStub, tmp_path: Path) -> None:
    webhook = start_webhook(tmp_path, stub.url, host="")
    try:
        ca = webhook.cert_dir / "ca.crt"
        assert answers("127.0.0.1", webhook.port, ca, SERVER_NAME)
        assert answers("[::1]", webhook.port, ca, SERVER_NAME)
        assert '"host":"every IPv4 and IPv6 address"' in webhook.log()
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
