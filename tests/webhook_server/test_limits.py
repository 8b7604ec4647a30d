"""serving.limits on a real uvicorn server over TLS: slow requests closed, connections capped.

The server runs in this process (a thread) so the deadline and the cap can be
made small; the protocol class is the one `sidecred webhook` serves with.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from sidecred.dev.processes import free_port, wait_until
from sidecred.pods.settings import Settings
from sidecred.serving import limits
from sidecred.webhook.app import create_app
from sidecred.webhook.metrics import WebhookMetrics
from tests.support.static_namespaces import StaticNamespaces

from .webhook_process import SERVER_NAME, issue_certificates

HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: sidecred\r\n\r\n"
HEALTHZ_CLOSE = b"GET /healthz HTTP/1.1\r\nHost: sidecred\r\nConnection: close\r\n\r\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    patch = pytest.MonkeyPatch()
    patch.setattr(limits, "REQUEST_DEADLINE_SECONDS", 1.0)
    patch.setattr(limits, "MAX_CONNECTIONS", 3)
    certs = tmp_path_factory.mktemp("tls")
    issue_certificates(certs)
    port = free_port()
    config = uvicorn.Config(
        create_app(Settings(), StaticNamespaces(), WebhookMetrics()),
        host="127.0.0.1",
        port=port,
        ssl_certfile=str(certs / "tls.crt"),
        ssl_keyfile=str(certs / "tls.key"),
        loop="asyncio",
        http=limits.DeadlineH11Protocol,
        log_config=None,
    )
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    wait_until(lambda: uv.started, what="uvicorn started")
    yield port, certs / "ca.crt"
    uv.should_exit = True
    thread.join(10)
    patch.undo()


def connect(port: int, ca: Path) -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=str(ca))
    raw = socket.create_connection(("127.0.0.1", port), timeout=30)
    return context.wrap_socket(raw, server_hostname=SERVER_NAME)


def read_to_eof(sock: ssl.SSLSocket) -> bytes:
    """Everything the server sends until it closes (a reset or TLS EOF counts as closed)."""
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (ConnectionResetError, ssl.SSLEOFError):
        pass
    return data


def read_response(sock: ssl.SSLSocket) -> int:
    """The status of one complete response on a kept-alive connection (body read too)."""
    response = http.client.HTTPResponse(sock)  # type: ignore[arg-type]
    response.begin()
    response.read()
    return response.status


def test_half_a_request_head_is_closed_after_the_deadline(server: tuple[int, Path]) -> None:
    port, ca = server
    with connect(port, ca) as sock:
        sock.sendall(b"POST /mutate HTTP/1.1\r\nHost: sid")  # and nothing more
        assert read_to_eof(sock) == b""  # closed by the server, nothing answered


def test_a_body_that_never_completes_is_closed(server: tuple[int, Path]) -> None:
    port, ca = server
    with connect(port, ca) as sock:
        sock.sendall(
            b"POST /mutate HTTP/1.1\r\nHost: s\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n{"
        )
        assert read_to_eof(sock) == b""


def test_the_deadline_applies_to_each_request_on_a_kept_alive_connection(
    server: tuple[int, Path],
) -> None:
    port, ca = server
    with connect(port, ca) as sock:
        sock.sendall(HEALTHZ)
        assert read_response(sock) == 200
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")  # the second request stalls
        assert read_to_eof(sock) == b""


def test_connections_over_the_cap_are_closed_at_once(
    server: tuple[int, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    port, ca = server
    monkeypatch.setattr(limits, "REQUEST_DEADLINE_SECONDS", 60.0)  # hold the cap's worth open
    monkeypatch.setattr(limits, "WAITED_SECONDS", 60.0)  # none has waited long enough to go
    held = [connect(port, ca) for _ in range(limits.MAX_CONNECTIONS)]
    try:
        for sock in held:  # an answer proves the server counts the connection
            sock.sendall(HEALTHZ)
            assert read_response(sock) == 200
        with connect(port, ca) as extra:
            extra.sendall(HEALTHZ)
            assert read_to_eof(extra) == b""
    finally:
        for sock in held:
            sock.close()
    wait_until(lambda: served(port, ca), what="a connection under the cap is served")


def test_at_the_cap_a_new_connection_takes_the_place_of_the_longest_waiting(
    server: tuple[int, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Held connections cannot lock the API server out: a connection that has waited
    WAITED_SECONDS for its next request makes room for a new one."""
    port, ca = server
    monkeypatch.setattr(limits, "REQUEST_DEADLINE_SECONDS", 60.0)
    monkeypatch.setattr(limits, "WAITED_SECONDS", 0.0)
    held = [connect(port, ca) for _ in range(limits.MAX_CONNECTIONS)]
    try:
        for sock in held:
            sock.sendall(HEALTHZ)
            assert read_response(sock) == 200
        with connect(port, ca) as extra:
            extra.sendall(HEALTHZ_CLOSE)
            assert read_to_eof(extra).startswith(b"HTTP/1.1 200")
        assert read_to_eof(held[0]) == b""  # the longest waiting, closed to make room
        held[1].sendall(HEALTHZ)
        assert read_response(held[1]) == 200  # the others still served
    finally:
        for sock in held:
            sock.close()


def served(port: int, ca: Path) -> bool:
    with connect(port, ca) as sock:
        sock.sendall(HEALTHZ_CLOSE)
        return read_to_eof(sock).startswith(b"HTTP/1.1 200")
