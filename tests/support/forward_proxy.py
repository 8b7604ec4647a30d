"""A forward HTTP proxy on loopback for tests: CONNECT tunnels and absolute-URI requests.

It records what it was asked (method, target, Proxy-Authorization), so a test
can prove a client went through it, and can be told to refuse tunnels (407).
"""

from __future__ import annotations

import select
import socket
import socketserver
import threading
from dataclasses import dataclass, field


@dataclass
class Asked:
    method: str
    target: str
    proxy_authorization: str | None


@dataclass
class ProxyState:
    asked: list[Asked] = field(default_factory=list)
    refuse_with: int | None = None  # answer every request with this status instead


def _read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    """(the request head, whatever followed it) from `sock`."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the client closed before a whole head")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def _relay(a: socket.socket, b: socket.socket) -> None:
    """Copy bytes both ways until either side closes."""
    sockets = [a, b]
    while True:
        readable, _, _ = select.select(sockets, [], [], 30)
        if not readable:
            return
        for sock in readable:
            data = sock.recv(65536)
            if not data:
                return
            (b if sock is a else a).sendall(data)


def _handler(state: ProxyState) -> type[socketserver.BaseRequestHandler]:
    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            client: socket.socket = self.request
            head, rest = _read_head(client)
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            state.asked.append(Asked(method, target, headers.get("proxy-authorization")))
            if state.refuse_with is not None:
                client.sendall(f"HTTP/1.1 {state.refuse_with} Refused\r\n\r\n".encode())
                return
            if method == "CONNECT":
                host, _, port = target.rpartition(":")
                with socket.create_connection((host.strip("[]"), int(port)), timeout=10) as up:
                    client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    _relay(client, up)
                return
            # An absolute URI: forward the request to its origin with a path-only target.
            scheme_less = target.split("://", 1)[1]
            authority, _, path = scheme_less.partition("/")
            host, _, port = authority.rpartition(":")
            kept = [f"{method} /{path} HTTP/1.1"] + [
                line for line in lines[1:] if not line.lower().startswith("proxy-")
            ]
            with socket.create_connection((host.strip("[]"), int(port)), timeout=10) as up:
                up.sendall("\r\n".join(kept).encode("latin-1") + b"\r\n\r\n" + rest)
                _relay(client, up)

    return Handler


class ForwardProxy:
    """`ForwardProxy()` listens on 127.0.0.1; `url`, `state`, and `close()`."""

    def __init__(self) -> None:
        self.state = ProxyState()
        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _handler(self.state))
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
