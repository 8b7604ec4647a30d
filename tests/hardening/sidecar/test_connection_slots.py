"""In-process: which connection makes room when the server is at its connection cap."""

from __future__ import annotations

import socket

from sidecred.dev.processes import wait_until
from sidecred.sidecar.server import Limits, Request, Response
from tests.support.reactor_server import RunningServer


def ok(request: Request) -> Response:
    return Response(200, b"{}")


def status_of(port: int) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
        line = sock.makefile("rb").readline()
    return int(line.split()[1])


def fill_with_idle(server: RunningServer, count: int) -> list[socket.socket]:
    conns = []
    for n in range(1, count + 1):
        conns.append(socket.create_connection(("127.0.0.1", server.port), timeout=30))
        wait_until(lambda n=n: server.active == n, 10.0, "the server to take the connection")
    return conns


def read_or_open(sock: socket.socket) -> bytes:
    """What the server sent (b"" once it closed), or b"<open>" if it is still silent."""
    sock.settimeout(0.5)
    try:
        return sock.recv(100)
    except TimeoutError:
        return b"<open>"
    finally:
        sock.close()


def run_at_cap(evictable_after: float) -> tuple[int, list[bytes]]:
    """Two idle connections fill a cap of two; a third sends a request. Its status, and what each idle one read."""
    limits = Limits(max_connections=2, evictable_after=evictable_after)
    with RunningServer(ok, limits) as server:
        idle = fill_with_idle(server, 2)
        status = status_of(server.port)
        return status, [read_or_open(sock) for sock in idle]


def test_at_the_cap_the_longest_waiting_connection_makes_room():
    status, seen = run_at_cap(evictable_after=0.0)
    assert status == 200
    assert seen == [b"", b"<open>"]  # the oldest was closed (end of stream), the newer kept


def test_connections_that_just_arrived_are_not_evicted():
    status, seen = run_at_cap(evictable_after=3600.0)
    assert status == 503
    assert seen == [b"<open>", b"<open>"]


def test_a_fresh_silent_connection_is_closed_after_the_header_timeout():
    limits = Limits(header_timeout=0.2, idle_timeout=3600.0)
    with RunningServer(ok, limits) as server:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        # Closed well before the idle timeout: a new connection gets only the header timeout.
        with sock:
            assert sock.recv(100) == b""
