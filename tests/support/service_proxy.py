"""A Service in front of replicas: each new connection goes to a ready backend.

Stands in for what kube-proxy and the endpoints controller do together: backends
whose `/readyz` answers 200 receive new connections (round robin); a backend that
answers 503, or nothing, receives none until it is ready again. As in a cluster,
what the proxy routes by lags what the backends say by `propagation_seconds`
(the endpoints controller, the EndpointSlice watch, kube-proxy or the API
server's service resolver), so a replica that stops at once still receives new
connections for that long. Connections already open stay where they are. Bytes
are copied as they are (TLS passes through), so clients verify the replicas' own
certificates.
"""

from __future__ import annotations

import itertools
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from sidecred.dev.processes import free_port

READINESS_POLL_SECONDS = 0.05  # how often the stand-in endpoints controller looks
PROPAGATION_SECONDS = 1.0  # from a readiness change to routing by it


@dataclass
class Backend:
    port: int
    ready: bool = False
    connections: int = 0  # connections the proxy sent here


@dataclass
class ServiceProxy:
    """Listens on 127.0.0.1:`port` and forwards to ready backends on 127.0.0.1."""

    backends: list[Backend]
    readiness: Callable[[int], bool]
    port: int = field(default_factory=free_port)
    propagation_seconds: float = PROPAGATION_SECONDS
    refused: int = 0  # connections that found no ready backend

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._turn = itertools.count()
        self._threads = [
            threading.Thread(target=self._accept, daemon=True),
            threading.Thread(target=self._poll, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _poll(self) -> None:
        seen: deque[tuple[float, list[bool]]] = deque()
        while not self._stop.is_set():
            now = time.monotonic()
            seen.append((now, [self.readiness(b.port) for b in self.backends]))
            while len(seen) > 1 and seen[1][0] <= now - self.propagation_seconds:
                seen.popleft()
            if seen[0][0] <= now - self.propagation_seconds:
                for backend, ready in zip(self.backends, seen[0][1], strict=True):
                    backend.ready = ready
            self._stop.wait(READINESS_POLL_SECONDS)

    def _pick(self) -> Backend | None:
        ready = [b for b in self.backends if b.ready]
        return ready[next(self._turn) % len(ready)] if ready else None

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            backend = self._pick()
            if backend is None:
                self.refused += 1
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", backend.port), timeout=5)
            except OSError:
                self.refused += 1
                client.close()
                continue
            upstream.settimeout(None)
            backend.connections += 1
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(source, sink), daemon=True).start()

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        for thread in self._threads:
            thread.join(timeout=5)


def _pump(source: socket.socket, sink: socket.socket) -> None:
    """Copy until either side ends, then end both (a closed connection closes its peer)."""
    try:
        while chunk := source.recv(65536):
            sink.sendall(chunk)
    except OSError:
        pass
    for sock in (source, sink):
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()


def https_readiness(ca_file: str, server_name: str) -> Callable[[int], bool]:
    """A readiness check: GET https://127.0.0.1:<port>/readyz answers 200 (certificate verified)."""
    context = ssl.create_default_context(cafile=ca_file)

    def ready(port: int) -> bool:
        try:
            with httpx.Client(verify=context, timeout=2.0) as http:
                response = http.get(
                    f"https://127.0.0.1:{port}/readyz", extensions={"sni_hostname": server_name}
                )
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    return ready
