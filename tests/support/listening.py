"""Which addresses a real server process answers on (IPv4, IPv6, or both)."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path
from typing import Protocol

import httpx
import pytest


class ServerProcess(Protocol):
    port: int
    cert_dir: Path

    def log(self) -> str: ...


def has_ipv6_loopback() -> bool:
    try:
        with socket.create_server(("::1", 0), family=socket.AF_INET6):
            return True
    except OSError:
        return False


needs_ipv6 = pytest.mark.skipif(not has_ipv6_loopback(), reason="this machine has no ::1")


def answers(host: str, port: int, ca: Path, server_name: str) -> bool:
    context = ssl.create_default_context(cafile=str(ca))
    with httpx.Client(verify=context, timeout=10) as http:
        response = http.get(
            f"https://{host}:{port}/healthz", extensions={"sni_hostname": server_name}
        )
    return response.status_code == 200


def assert_answers_on_both_families(server: ServerProcess, server_name: str) -> None:
    """The server answers on 127.0.0.1 and on ::1, and its log says it listens on both."""
    ca = server.cert_dir / "ca.crt"
    assert answers("127.0.0.1", server.port, ca, server_name)
    assert answers("[::1]", server.port, ca, server_name)
    assert '"host":"every IPv4 and IPv6 address"' in server.log()
