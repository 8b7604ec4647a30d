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
import enum
import json
import socket
from collections.abc import Callable
from dataclasses import dataclass, field

from sidecred.sidecar import log

# The reason phrases of every status these listeners send (http.HTTPStatus's
# enum would cost each pod's sidecar more memory than this whole table).
REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    413: "Request Entity Too Large",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}


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
    reason = REASONS.get(response.status, "Unknown")
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
    code = REASONS.get(status, "Unknown").replace(" ", "")
    body = {"Code": code, "Message": message, "code": code, "message": message}
    return Response(status, json.dumps(body).encode())


class HttpServer:
    """Serves `handler` on one listener; one `_Connection` protocol per client.

    A protocol rather than streams: bytes accumulate in a buffer and each
    complete head is parsed and answered in one pass, without a coroutine,
    stream reader or timeout context per request (the profile's main costs).
    """

    def __init__(
        self, handler: Handler, host: str, port: int, limits: Limits | None = None
    ) -> None:
        self.handler = handler
        self.host = host
        self.requested_port = port
        self.limits = limits or Limits()
        self.slots = ConnectionSlots(self.limits.max_connections, self.limits.evictable_after)
        self._server: asyncio.Server | None = None
        # Rendered answers by (response, keep_alive, head_only): the credentials
        # body changes once per refresh, so the same few bytes are sent again and again.
        self._rendered: dict[tuple[Response, bool, bool], bytes] = {}

    @property
    def active(self) -> int:
        """Connections holding a slot."""
        return self.slots.active

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self, sock: socket.socket | None = None) -> None:
        """Listen on (host, port), or on `sock` when the caller bound it (e.g. dual-stack)."""
        loop = asyncio.get_running_loop()
        if sock is not None:
            self._server = await loop.create_server(lambda: _Connection(self), sock=sock)
            return
        self._server = await loop.create_server(
            lambda: _Connection(self), self.host, self.requested_port, reuse_address=True
        )

    async def close(self) -> None:
        if self._server is None:
            return
        self._server.close()
        self.slots.close_all()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), timeout=2)

    def render(self, response: Response, keep_alive: bool, head_only: bool) -> bytes:
        key = (response, keep_alive, head_only)
        data = self._rendered.get(key)
        if data is None:
            data = render_response(response, keep_alive=keep_alive, head_only=head_only)
            if len(self._rendered) >= _RENDERED_CAP:
                self._rendered.clear()  # error texts vary; never let them pile up
            self._rendered[key] = data
        return data


class ConnectionSlots:
    """The listener's connection slots: who holds one, and who is waiting for a request head.

    At the cap, the connection that has waited longest for a head (idle, or
    trickling one in) is evicted once it has waited `evictable_after` seconds,
    so slow or idle clients can't lock out one that sends its request at once.
    """

    def __init__(self, limit: int, evictable_after: float) -> None:
        self.limit = limit
        self.evictable_after = evictable_after
        self._holders: set[_Connection] = set()
        # Holders waiting for a request head -> since when (loop time), oldest first.
        self._waiting: dict[_Connection, float] = {}

    @property
    def active(self) -> int:
        return len(self._holders)

    def admit(self, connection: _Connection, now: float) -> bool:
        """Give `connection` a slot (evicting if need be); False when none can be had."""
        if len(self._holders) >= self.limit and not self._evict_longest_waiting(now):
            return False
        self._holders.add(connection)
        self._waiting[connection] = now
        return True

    def waiting(self, connection: _Connection, now: float) -> None:
        """`connection` answered a request and now waits for the next head."""
        if connection in self._holders:
            self._waiting.pop(connection, None)
            self._waiting[connection] = now  # to the end: the newest waiter

    def busy(self, connection: _Connection) -> None:
        """`connection` has a whole head (or is closing): no longer evictable."""
        self._waiting.pop(connection, None)

    def release(self, connection: _Connection) -> None:
        self._holders.discard(connection)
        self._waiting.pop(connection, None)

    def close_all(self) -> None:
        for connection in list(self._holders):
            connection.transport.close()

    def _evict_longest_waiting(self, now: float) -> bool:
        for connection, since in self._waiting.items():
            if now - since < self.evictable_after:
                return False
            connection.evict()  # releases its slot; the loop ends here
            return True
        return False


_RENDERED_CAP = 256
_TOO_MANY = render_response(_error_response(503, "too many connections"), keep_alive=False)


def _find_head_end(buf: bytearray) -> tuple[int, int]:
    """(end of the head, start of what follows) or (-1, -1) while incomplete.

    The head ends at the first blank line after the request line; a blank line
    is CRLF or a bare LF, so the head's last newline is followed by `\r\n` or `\n`.
    """
    first = buf.find(b"\n")
    if first < 0:
        return -1, -1
    crlf = buf.find(b"\n\r\n", first)
    # A bare-LF blank line counts only if it comes first.
    lf = buf.find(b"\n\n", first, crlf + 1 if crlf >= 0 else len(buf))
    if lf >= 0:
        return lf + 1, lf + 2
    if crlf >= 0:
        return crlf + 1, crlf + 3
    return -1, -1


class Phase(enum.Enum):
    """Where a connection is, which decides what its deadline means when it passes."""

    FIRST_HEAD = "first-head"  # no head yet: header timeout from the accept
    IDLE = "idle"  # kept alive between requests: idle timeout
    HEAD = "head"  # part of a later head arrived: header timeout from its first byte
    BODY = "body"  # draining a small body: header timeout
    WRITE_BLOCKED = "write-blocked"  # the client isn't reading its answers: write timeout
    CLOSING = "closing"  # what was written is being sent: write timeout, then abort


class _Connection(asyncio.Protocol):
    """One client connection: parse heads from a buffer, answer, and keep its deadlines.

    One timer per connection (`loop.call_at`), re-armed lazily: `deadline` may
    move later without touching the timer, which on firing re-arms itself for
    the current deadline; it is re-armed at once only when the deadline moves
    earlier. What a passed deadline means depends on the `phase`.
    """

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.slots = server.slots
        self.limits = server.limits
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.buffer = bytearray()
        self.phase = Phase.FIRST_HEAD
        self.pending: Request | None = None  # the request whose small body is being drained
        self.to_drain = 0
        self.deadline = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = 0.0

    # --- asyncio.Protocol ---------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        now = self.loop.time()
        if not self.slots.admit(self, now):
            # Refuse at once rather than queue: a flood must not hold the slots.
            self.phase = Phase.CLOSING
            self.transport.write(_TOO_MANY)
            self.transport.close()
            return
        self._set_deadline(now + self.limits.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self.phase = Phase.CLOSING
        self.slots.release(self)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def data_received(self, data: bytes) -> None:
        if self.phase is Phase.CLOSING:
            return
        self.buffer += data
        if self.phase is not Phase.WRITE_BLOCKED:  # else answered once the client reads
            self._process_safely()

    def eof_received(self) -> bool:
        # A client that half-closes has sent all it will: what is complete has
        # been answered; an unfinished head gets no answer. Close once written.
        self.phase = Phase.CLOSING
        self.slots.busy(self)
        self._set_deadline(self.loop.time() + self.limits.write_timeout)
        return False

    def pause_writing(self) -> None:
        # The client isn't reading its answers: stop reading its requests, and
        # give it the write timeout to catch up.
        if self.phase is Phase.CLOSING:
            return
        self.phase = Phase.WRITE_BLOCKED
        self.transport.pause_reading()
        self._set_deadline(self.loop.time() + self.limits.write_timeout)

    def resume_writing(self) -> None:
        if self.phase is not Phase.WRITE_BLOCKED:
            return
        self.phase = Phase.IDLE  # writes block only right after an answer
        self.transport.resume_reading()
        self._set_deadline(self.loop.time() + self.limits.header_timeout)
        self._process_safely()

    # --- requests -------------------------------------------------------------
    def _process_safely(self) -> None:
        try:
            self._process()
        except Exception as exc:  # a handler bug must not kill the listener
            log.error("http_connection_failed", error=type(exc).__name__)
            self._close()

    def _process(self) -> None:
        """Answer every complete request in the buffer, in order (pipelining)."""
        while self.phase not in (Phase.CLOSING, Phase.WRITE_BLOCKED):
            if self.phase is Phase.BODY:
                if len(self.buffer) < self.to_drain:
                    return  # the rest of the body is still on its way
                del self.buffer[: self.to_drain]
                request, self.pending, self.to_drain = self.pending, None, 0
                assert request is not None
                self._respond(request)
            elif not self._take_head():
                return

    def _take_head(self) -> bool:
        """Parse and answer the next head in the buffer; False while none is complete."""
        buf, limits = self.buffer, self.limits
        if not buf:
            if self.phase is Phase.IDLE:
                self._set_deadline(self.loop.time() + limits.idle_timeout)
            return False
        end, rest = _find_head_end(buf)
        if end < 0:
            if len(buf) > limits.max_header_bytes + 2:  # no head this long ends within the cap
                self._refuse(BadRequest(431, "request header fields too large"))
            elif self.phase is Phase.IDLE:
                self.phase = Phase.HEAD
                self._set_deadline(self.loop.time() + limits.header_timeout)
            return False
        if end > limits.max_header_bytes:
            self._refuse(BadRequest(431, "request header fields too large"))
            return False
        head = bytes(buf[:end])
        del buf[:rest]
        self.slots.busy(self)
        try:
            request = parse_head(head)
            to_drain = body_length(request, limits)
        except BadRequest as exc:
            self._refuse(exc)
            return False
        if to_drain > len(buf):
            self.pending, self.to_drain, self.phase = request, to_drain, Phase.BODY
            self._set_deadline(self.loop.time() + limits.header_timeout)
            return False
        del buf[:to_drain]
        self._respond(request)
        return True

    def _respond(self, request: Request) -> None:
        keep_alive = wants_keep_alive(request)
        response = self.server.handler(request)
        # Before the write, which may block it (pause_writing) or be the last.
        self.phase = Phase.IDLE
        self.transport.write(self.server.render(response, keep_alive, request.method == "HEAD"))
        if not keep_alive:
            self._close()
            return
        self.slots.waiting(self, self.loop.time())

    def _refuse(self, exc: BadRequest) -> None:
        self.transport.write(
            render_response(_error_response(exc.status, exc.message), keep_alive=False)
        )
        self._close()

    # --- closing and deadlines ----------------------------------------------------
    def _close(self) -> None:
        """Close once what was written is sent; abort if it isn't sent within the write timeout."""
        if self.phase is Phase.CLOSING:
            return
        self.phase = Phase.CLOSING
        self.slots.busy(self)
        self.transport.close()
        self._set_deadline(self.loop.time() + self.limits.write_timeout)

    def evict(self) -> None:
        """Make room at the connection cap: close now and free the slot at once."""
        self._close()
        self.slots.release(self)

    def _set_deadline(self, at: float) -> None:
        self.deadline = at
        if self.timer is None or at < self.timer_at:
            if self.timer is not None:
                self.timer.cancel()
            self.timer = self.loop.call_at(at, self._on_deadline)
            self.timer_at = at

    def _on_deadline(self) -> None:
        self.timer = None
        if self.loop.time() < self.deadline:
            self._set_deadline(self.deadline)  # the deadline moved later since arming
            return
        phase = self.phase
        if phase in (Phase.CLOSING, Phase.WRITE_BLOCKED):
            self.transport.abort()  # the client won't take what it was sent
        elif phase is Phase.BODY or not self.buffer:
            self._close()  # idle, or a body that never came: close without an answer
        else:
            self._refuse(BadRequest(408, "request head not received in time"))
