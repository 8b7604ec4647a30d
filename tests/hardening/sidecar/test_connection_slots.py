"""In-process: which connection makes room when the server is at its connection cap."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from sidecred.dev.processes import wait_until
from sidecred.sidecar.server import HttpServer, Limits, Request, Response


def ok(request: Request) -> Response:
    return Response(200, b"{}")


async def until(condition: Callable[[], object], what: str) -> None:
    """`wait_until` in a thread, so the event loop keeps serving while it polls."""
    await asyncio.to_thread(wait_until, condition, 10.0, what)


async def status_of(port: int) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
    line = await reader.readline()
    writer.close()
    return int(line.split()[1])


async def fill_with_idle(server: HttpServer, count: int):
    conns = []
    for n in range(1, count + 1):
        conns.append(await asyncio.open_connection("127.0.0.1", server.port))
        await until(lambda n=n: server.active == n, "the server to take the connection")
    return conns


def run_at_cap(evictable_after: float) -> tuple[int, list[bytes]]:
    """Two idle connections fill a cap of two; a third sends a request. Its status, and what each idle one read."""

    async def scenario():
        server = HttpServer(
            ok, "127.0.0.1", 0, Limits(max_connections=2, evictable_after=evictable_after)
        )
        await server.start()
        try:
            idle = await fill_with_idle(server, 2)
            status = await status_of(server.port)
            seen = []
            for reader, writer in idle:
                try:
                    seen.append(await asyncio.wait_for(reader.read(100), 0.5))
                except TimeoutError:
                    seen.append(b"<open>")
                writer.close()
            return status, seen
        finally:
            await server.close()

    return asyncio.run(scenario())


def test_at_the_cap_the_longest_waiting_connection_makes_room():
    status, seen = run_at_cap(evictable_after=0.0)
    assert status == 200
    assert seen == [b"", b"<open>"]  # the oldest was closed (end of stream), the newer kept


def test_connections_that_just_arrived_are_not_evicted():
    status, seen = run_at_cap(evictable_after=3600.0)
    assert status == 503
    assert seen == [b"<open>", b"<open>"]


def test_a_fresh_silent_connection_is_closed_after_the_header_timeout():
    async def scenario():
        limits = Limits(header_timeout=0.2, idle_timeout=3600.0)
        server = HttpServer(ok, "127.0.0.1", 0, limits)
        await server.start()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            # Closed well before the idle timeout: a new connection gets only the header timeout.
            data = await asyncio.wait_for(reader.read(100), 30)
            writer.close()
            return data
        finally:
            await server.close()

    assert asyncio.run(scenario()) == b""
