"""A minimal asyncio HTTP/1.1 server for the sidecar's two small listeners.

Enough HTTP for SDK credential providers, kubelet probes and curl: GET
requests, keep-alive, no bodies. Defensive limits keep one slow or hostile
client from exhausting it: a bounded header size, a deadline for the whole
request head, an idle keep-alive timeout, a write deadline, and a cap on
concurrent connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus

from sidecar import log


@dataclass(frozen=True)
class Request:
    method: str
    target: str
    version: str
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = field(default=())


Handler = Callable[[Request], Response]


@dataclass(frozen=True)
class Limits:
    max_header_bytes: int = 8192  # request line + headers
    # A new connection's first head, from the accept; later heads, from their first byte.
    header_timeout: float = 10.0
    idle_timeout: float = 30.0  # keep-alive: waiting for the next request's first byte
    write_timeout: float = 10.0  # a client that won't read its response
    max_connections: int = 128
    # At the cap, the connection that has waited longest for a request head is
    # closed to make room, once it has waited this long: slow or idle clients
    # can't lock out one that sends its request at once.
    evictable_after: float = 1.0
    max_drained_body: int = 1024  # small bodies are read and ignored; larger ones get 413


class BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


_TOKEN_CHARS = frozenset(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)


def parse_head(head: bytes) -> Request:
    """Parse a request line and headers (everything before the blank line).

    Tolerant where it is safe (bare LF line ends, odd header names and values,
    repeated headers); strict where ambiguity would matter (request line,
    whitespace before a colon, Content-Length).
    """
    text = head.decode("latin-1")
    lines = text.replace("\r\n", "\n").split("\n")
    while lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise BadRequest(400, "empty request")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[0] or not parts[1]:
        raise BadRequest(400, "malformed request line")
    method, target, version = parts
    if not set(method) <= _TOKEN_CHARS:
        raise BadRequest(400, "malformed method")
    if not version.startswith("HTTP/1."):
        if version.startswith("HTTP/"):
            raise BadRequest(505, "only HTTP/1.x is supported")
        raise BadRequest(400, "malformed request line")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise BadRequest(400, "malformed header line")
        key = name.lower()
        value = value.strip(" \t")
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return Request(method, target, version, headers)


def body_length(request: Request, limits: Limits) -> int:
    """How many body bytes to drain; raise BadRequest when a body is refused."""
    if "transfer-encoding" in request.headers:
        raise BadRequest(413, "request bodies are not accepted")
    raw = request.headers.get("content-length")
    if raw is None:
        return 0
    # ASCII digits only: str.isdigit() also accepts "²" (latin-1 0xB2), which int() rejects.
    if not (raw.isascii() and raw.isdigit()):
        raise BadRequest(400, "invalid Content-Length")
    length = int(raw)
    if length > limits.max_drained_body:
        raise BadRequest(413, "request bodies are not accepted")
    return length


def wants_keep_alive(request: Request) -> bool:
    tokens = {t.strip().lower() for t in request.headers.get("connection", "").split(",")}
    if request.version == "HTTP/1.0":
        return "keep-alive" in tokens
    return "close" not in tokens


def render_response(response: Response, *, keep_alive: bool, head_only: bool = False) -> bytes:
    try:
        reason = HTTPStatus(response.status).phrase
    except ValueError:
        reason = "Unknown"
    lines = [
        f"HTTP/1.1 {response.status} {reason}",
        f"Content-Type: {response.content_type}",
        f"Content-Length: {len(response.body)}",
        "Cache-Control: no-store",
    ]
    lines += [f"{name}: {value}" for name, value in response.headers]
    if not keep_alive:
        lines.append("Connection: close")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head if head_only else head + response.body


def _error_response(status: int, message: str) -> Response:
    code = HTTPStatus(status).phrase.replace(" ", "")
    body = {"Code": code, "Message": message, "code": code, "message": message}
    return Response(status, json.dumps(body).encode())


class HttpServer:
    def __init__(
        self, handler: Handler, host: str, port: int, limits: Limits | None = None
    ) -> None:
        self.handler = handler
        self.host = host
        self.requested_port = port
        self.limits = limits or Limits()
        self.active = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        # Connections waiting for a request head -> since when (loop time), oldest first.
        self._waiting: dict[asyncio.StreamWriter, float] = {}

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._serve_connection,
            self.host,
            self.requested_port,
            limit=self.limits.max_header_bytes,
            reuse_address=True,
        )

    async def close(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), timeout=2)

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        if self.active >= self.limits.max_connections and not self._evict_longest_waiting():
            # Refuse at once rather than queue: a flood must not hold the slots.
            writer.write(
                render_response(_error_response(503, "too many connections"), keep_alive=False)
            )
            with contextlib.suppress(Exception):
                writer.close()
            return
        self.active += 1
        self._writers.add(writer)
        try:
            await self._serve_requests(reader, writer)
        except (ConnectionError, TimeoutError, asyncio.IncompleteReadError):
            pass
        except Exception as exc:  # a handler bug must not kill the listener
            log.error("http_connection_failed", error=type(exc).__name__)
        finally:
            self.active -= 1
            self._writers.discard(writer)
            self._waiting.pop(writer, None)
            with contextlib.suppress(Exception):
                writer.close()

    def _evict_longest_waiting(self) -> bool:
        """Close the connection that has waited longest for a head, if it is evictable."""
        for writer, since in self._waiting.items():
            if asyncio.get_running_loop().time() - since < self.limits.evictable_after:
                return False
            del self._waiting[writer]
            # Its task sees end-of-stream and ends, freeing the slot.
            writer.close()
            return True
        return False

    async def _read_head(self, reader: asyncio.StreamReader, *, fresh: bool) -> bytes | None:
        """The next request head, or None when the client closed or went idle.

        On a `fresh` connection the header timeout runs from the accept: a client
        that connects and sends nothing holds a slot no longer than a slow one.
        """
        limits = self.limits
        # One asyncio.timeout per request head, not wait_for: wait_for wraps the
        # read in a new Task on every request, which profiling showed to be the
        # hot path's main overhead. On a kept-alive connection the deadline starts
        # as the idle timeout and is moved to the header timeout once the first
        # byte arrives; on a fresh one it is the header timeout from the start.
        started = False
        try:
            wait = limits.header_timeout if fresh else limits.idle_timeout
            async with asyncio.timeout(wait) as deadline:
                first = await reader.read(1)
                if not first:
                    return None
                started = True
                if not fresh:
                    deadline.reschedule(asyncio.get_running_loop().time() + limits.header_timeout)
                return await self._read_lines(reader, bytearray(first))
        except asyncio.LimitOverrunError:
            raise BadRequest(431, "request header fields too large") from None
        except asyncio.IncompleteReadError:
            return None  # the client went away mid-request
        except TimeoutError:
            if not started:
                return None  # idle keep-alive connection
            raise BadRequest(408, "request head not received in time") from None

    async def _read_lines(self, reader: asyncio.StreamReader, head: bytearray) -> bytes:
        """Read lines up to the blank one; CRLF or bare LF line ends."""
        first_line = True
        while True:
            line = await reader.readuntil(b"\n")
            if first_line:
                head += line
                first_line = False
            else:
                if line in (b"\r\n", b"\n"):
                    return bytes(head)
                head += line
            if len(head) > self.limits.max_header_bytes:
                raise BadRequest(431, "request header fields too large")

    async def _write(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        writer.write(data)
        if writer.transport.get_write_buffer_size() == 0:
            return  # all sent: nothing to wait for, no timer to arm
        async with asyncio.timeout(self.limits.write_timeout):
            await writer.drain()

    async def _serve_requests(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        loop = asyncio.get_running_loop()
        waiting = self._waiting
        fresh = True
        while True:
            try:
                waiting[writer] = loop.time()
                head = await self._read_head(reader, fresh=fresh)
                waiting.pop(writer, None)
                fresh = False
                if head is None:
                    return
                request = parse_head(head)
                to_drain = body_length(request, self.limits)
            except BadRequest as exc:
                await self._write(
                    writer,
                    render_response(_error_response(exc.status, exc.message), keep_alive=False),
                )
                return
            if to_drain:
                await asyncio.wait_for(reader.readexactly(to_drain), self.limits.header_timeout)
            keep_alive = wants_keep_alive(request)
            response = self.handler(request)
            await self._write(
                writer,
                render_response(
                    response, keep_alive=keep_alive, head_only=request.method == "HEAD"
                ),
            )
            if not keep_alive:
                return
