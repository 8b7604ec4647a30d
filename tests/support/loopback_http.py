"""Scripted HTTP(S) servers on 127.0.0.1 for tests: one POST answer function, a thread each."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# (path, lower-case headers, body) -> (status, content type, body)
PostAnswer = Callable[[str, dict[str, str], bytes], tuple[int, str, bytes]]


def post_handler(answer: PostAnswer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, content_type, data = answer(self.path, headers, body)
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


class LoopbackServers:
    """Servers started by one test; `stop_all` at teardown."""

    def __init__(self) -> None:
        self._servers: list[ThreadingHTTPServer] = []

    def start(self, answer: PostAnswer, tls: ssl.SSLContext | None = None) -> int:
        """Serve `answer` on a free port (over TLS with `tls`); return the port."""
        server = ThreadingHTTPServer(("127.0.0.1", 0), post_handler(answer))
        server.daemon_threads = True
        if tls is not None:
            server.socket = tls.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self._servers.append(server)
        return int(server.server_address[1])

    def stop_all(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
