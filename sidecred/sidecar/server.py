"""A minimal HTTP/1.1 server on the sidecar's own event loop (`reactor.py`), for its two listeners.

Enough HTTP for SDK credential providers, kubelet probes and curl: GET
requests, keep-alive, no bodies. Defensive limits keep one slow or hostile
client from exhausting it: a bounded header size, a deadline for the whole
request head, an idle keep-alive timeout, a write deadline, and a cap on
concurrent connections.
"""

from __future__ import annotations

import errno
import json
import socket
from collections.abc import Callable

from sidecred.sidecar import log
from sidecred.sidecar.reactor import READ, WRITE, Reactor, Timer

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


class Request:
    __slots__ = ("headers", "method", "target", "version")

    def __init__(self, method: str, target: str, version: str, headers: dict[str, str]) -> None:
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers  # lower-case names; repeated headers joined with ", "


class Response:
    """An answer; equal answers are equal (and hash alike), so their rendering is cached."""

    __slots__ = ("body", "content_type", "headers", "status")

    def __init__(
        self,
        status: int,
        body: bytes,
        content_type: str = "application/json",
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = headers

    def _key(self) -> tuple[int, bytes, str, tuple[tuple[str, str], ...]]:
        return (self.status, self.body, self.content_type, self.headers)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Response) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())


Handler = Callable[[Request], Response]


class Limits:
    """The server's defensive limits. The class holds the defaults the sidecar runs with;
    an instance may override some by keyword (a plain class: `dataclasses` costs each pod
    ~2 MB)."""

    max_header_bytes = 8192  # request line + headers
    # A new connection's first head, from the accept; later heads, from their first byte.
    header_timeout = 10.0
    idle_timeout = 30.0  # keep-alive: waiting for the next request's first byte
    write_timeout = 10.0  # a client that won't read its response
    max_connections = 128
    # At the cap, the connection that has waited longest for a request head is
    # closed to make room, once it has waited this long: slow or idle clients
    # can't lock out one that sends its request at once.
    evictable_after = 1.0
    max_drained_body = 1024  # small bodies are read and ignored; larger ones get 413

    def __init__(self, **overrides: float) -> None:
        for name, value in overrides.items():
            default = Limits.__dict__.get(name)
            if not isinstance(default, int | float):
                raise TypeError(f"Limits has no {name}")
            setattr(self, name, type(default)(value))


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
    """Serves `handler` on one listener of `reactor`; one `_Connection` per client.

    Bytes accumulate in a buffer and each complete head is parsed and answered
    in one pass; answers go straight to the socket, and only what the kernel
    does not take at once waits for the socket to be writable.
    """

    def __init__(
        self,
        handler: Handler,
        host: str,
        port: int,
        limits: Limits | None = None,
        reactor: Reactor | None = None,
    ) -> None:
        self.handler = handler
        self.host = host
        self.requested_port = port
        self.limits = limits or Limits()
        self.reactor = reactor or Reactor()
        self.slots = ConnectionSlots(self.limits.max_connections, self.limits.evictable_after)
        self._sock: socket.socket | None = None
        # Rendered answers by (response, keep_alive, head_only): the credentials
        # body changes once per refresh, so the same few bytes are sent again and again.
        self._rendered: dict[tuple[Response, bool, bool], bytes] = {}
        # Parsed heads by their bytes: an app's SDK sends the same head every time.
        self._parsed: dict[bytes, tuple[Request, int, bool]] = {}

    @property
    def active(self) -> int:
        """Connections holding a slot."""
        return self.slots.active

    @property
    def port(self) -> int:
        assert self._sock is not None
        return int(self._sock.getsockname()[1])

    def start(self, sock: socket.socket | None = None) -> None:
        """Listen on (host, port), or on `sock` when the caller bound it (e.g. dual-stack)."""
        if sock is None:
            sock = socket.create_server((self.host, self.requested_port), backlog=128)
        sock.setblocking(False)
        self._sock = sock
        self.reactor.watch(sock, READ, self._accept)

    def close(self) -> None:
        if self._sock is None:
            return
        self.reactor.forget(self._sock)
        self._sock.close()
        self._sock = None
        self.slots.close_all()

    def _accept(self, _events: int) -> None:
        assert self._sock is not None
        for _ in range(64):  # a bounded batch, so one flood can't starve the other listener
            try:
                sock, _address = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    log.error("accept_failed", error=str(exc))
                return
            _Connection(self, sock)

    def parse(self, head: bytes) -> tuple[Request, int, bool]:
        """(request, body bytes to drain, keep-alive) of a head; BadRequest if refused.

        Short heads are remembered (at most _PARSED_CAP of them, so at most a few
        kilobytes): parsing is pure, and the hot path then skips it.
        """
        parsed = self._parsed.get(head)
        if parsed is None:
            request = parse_head(head)
            parsed = (request, body_length(request, self.limits), wants_keep_alive(request))
            if len(head) <= _PARSED_HEAD_BYTES:
                if len(self._parsed) >= _PARSED_CAP:
                    self._parsed.clear()
                self._parsed[head] = parsed
        return parsed

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
            connection.abort()

    def _evict_longest_waiting(self, now: float) -> bool:
        for connection, since in self._waiting.items():
            if now - since < self.evictable_after:
                return False
            connection.evict()  # releases its slot; the loop ends here
            return True
        return False


_RENDERED_CAP = 256
_PARSED_CAP = 32
_PARSED_HEAD_BYTES = 1024
_TOO_MANY = render_response(_error_response(503, "too many connections"), keep_alive=False)
_RECV_BYTES = 65536
# Unsent answer bytes above which a client counts as not reading (and is not read from).
_HIGH_WATER = 64 * 1024


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


# Where a connection is, which decides what its deadline means when it passes.
FIRST_HEAD = "first-head"  # no head yet: header timeout from the accept
IDLE = "idle"  # kept alive between requests: idle timeout
HEAD = "head"  # part of a later head arrived: header timeout from its first byte
BODY = "body"  # draining a small body: header timeout
WRITE_BLOCKED = "write-blocked"  # the client isn't reading its answers: write timeout
CLOSING = "closing"  # what was written is being sent: write timeout, then abort
CLOSED = "closed"
_NOT_PROCESSING = frozenset({CLOSING, WRITE_BLOCKED, CLOSED})


class _Connection:
    """One client connection: parse heads from a buffer, answer, and keep its deadlines.

    One timer per connection, re-armed lazily: `deadline` may move later
    without touching the timer, which on firing re-arms itself for the current
    deadline; it is re-armed at once only when the deadline moves earlier.
    What a passed deadline means depends on the `phase`.
    """

    __slots__ = (
        "buffer",
        "deadline",
        "eof",
        "limits",
        "outgoing",
        "pending",
        "phase",
        "reactor",
        "server",
        "slots",
        "sock",
        "timer",
        "to_drain",
    )

    def __init__(self, server: HttpServer, sock: socket.socket) -> None:
        self.server = server
        self.slots = server.slots
        self.limits = server.limits
        self.reactor = server.reactor
        self.sock = sock
        self.buffer = bytearray()
        self.outgoing = bytearray()  # written but not yet taken by the kernel
        self.phase = FIRST_HEAD
        # The request (and its keep-alive) whose small body is being drained.
        self.pending: tuple[Request, bool] | None = None
        self.to_drain = 0
        self.deadline = 0.0
        self.eof = False  # the client has sent all it will (it may still read)
        self.timer: Timer | None = None
        sock.setblocking(False)
        now = self.reactor.time()
        if not self.slots.admit(self, now):
            # Refuse at once rather than queue: a flood must not hold the slots.
            self._send(_TOO_MANY)
            self.phase = CLOSING
            self._finish_closing()
            return
        self.reactor.watch(sock, READ, self._on_ready)
        self._set_deadline(now + self.limits.header_timeout)

    # --- socket events ---------------------------------------------------------------
    def _on_ready(self, events: int) -> None:
        if events & WRITE:
            self._flush()
        if events & READ and self.phase not in (WRITE_BLOCKED, CLOSED):
            self._read()

    def _read(self) -> None:
        try:
            data = self.sock.recv(_RECV_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.abort()
            return
        if not data:
            # A client that half-closes has sent all it will: what is complete has
            # been answered; an unfinished head gets no answer. Close once written,
            # no longer watching for reads (an end of stream stays readable for ever).
            self.eof = True
            self._close()
            if self.phase is CLOSING:
                self._watch()
            return
        if self.phase is CLOSING:
            return
        self.buffer += data
        self._process_safely()

    def _send(self, data: bytes) -> None:
        """Write `data`: straight to the socket, and what it does not take when it can."""
        if not self.outgoing:
            try:
                sent = self.sock.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                self.abort()
                return
            if sent == len(data):
                return
            data = data[sent:]
        self.outgoing += data
        self._watch()
        if len(self.outgoing) > _HIGH_WATER and self.phase not in (CLOSING, CLOSED):
            # The client isn't reading its answers: stop reading its requests,
            # and give it the write timeout to catch up.
            self.phase = WRITE_BLOCKED
            self._watch()
            self._set_deadline(self.reactor.time() + self.limits.write_timeout)

    def _flush(self) -> None:
        try:
            sent = self.sock.send(self.outgoing)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.abort()
            return
        del self.outgoing[:sent]
        if self.outgoing:
            return
        if self.phase is CLOSING:
            self._finish_closing()
            return
        if self.phase is WRITE_BLOCKED:
            self.phase = IDLE  # writes block only right after an answer
            self._set_deadline(self.reactor.time() + self.limits.header_timeout)
            self._watch()
            self._process_safely()
            return
        self._watch()

    def _watch(self) -> None:
        events = WRITE if self.outgoing else 0
        if self.phase not in (WRITE_BLOCKED, CLOSING, CLOSED):
            events |= READ
        elif self.phase is CLOSING and not self.eof:
            events |= READ  # to notice a client that goes away while we flush
        self.reactor.watch(self.sock, events, self._on_ready)

    # --- requests ----------------------------------------------------------------------
    def _process_safely(self) -> None:
        try:
            self._process()
        except Exception as exc:  # a handler bug must not kill the listener
            log.error("http_connection_failed", error=type(exc).__name__)
            self._close()

    def _process(self) -> None:
        """Answer every complete request in the buffer, in order (pipelining)."""
        while self.phase not in _NOT_PROCESSING:
            if self.phase is BODY:
                if len(self.buffer) < self.to_drain:
                    return  # the rest of the body is still on its way
                del self.buffer[: self.to_drain]
                pending, self.pending, self.to_drain = self.pending, None, 0
                assert pending is not None
                self._respond(*pending)
            elif not self._take_head():
                return

    def _take_head(self) -> bool:
        """Parse and answer the next head in the buffer; False while none is complete."""
        buf, limits = self.buffer, self.limits
        if not buf:
            if self.phase is IDLE:
                self._set_deadline(self.reactor.time() + limits.idle_timeout)
            return False
        end, rest = _find_head_end(buf)
        if end < 0:
            if len(buf) > limits.max_header_bytes + 2:  # no head this long ends within the cap
                self._refuse(BadRequest(431, "request header fields too large"))
            elif self.phase is IDLE:
                self.phase = HEAD
                self._set_deadline(self.reactor.time() + limits.header_timeout)
            return False
        if end > limits.max_header_bytes:
            self._refuse(BadRequest(431, "request header fields too large"))
            return False
        head = bytes(buf[:end])
        del buf[:rest]
        self.slots.busy(self)
        try:
            request, to_drain, keep_alive = self.server.parse(head)
        except BadRequest as exc:
            self._refuse(exc)
            return False
        if to_drain > len(buf):
            self.pending, self.to_drain, self.phase = (request, keep_alive), to_drain, BODY
            self._set_deadline(self.reactor.time() + limits.header_timeout)
            return False
        del buf[:to_drain]
        self._respond(request, keep_alive)
        return True

    def _respond(self, request: Request, keep_alive: bool) -> None:
        response = self.server.handler(request)
        # Before the write, which may block it or be the last.
        self.phase = IDLE
        self._send(self.server.render(response, keep_alive, request.method == "HEAD"))
        if not keep_alive:
            self._close()
            return
        if self.phase is IDLE:
            self.slots.waiting(self, self.reactor.time())

    def _refuse(self, exc: BadRequest) -> None:
        self._send(render_response(_error_response(exc.status, exc.message), keep_alive=False))
        self._close()

    # --- closing and deadlines ----------------------------------------------------------
    def _close(self) -> None:
        """Close once what was written is sent; abort if it isn't sent within the write timeout."""
        if self.phase in (CLOSING, CLOSED):
            return
        self.phase = CLOSING
        self.slots.busy(self)
        if not self.outgoing:
            self._finish_closing()
            return
        self._watch()
        self._set_deadline(self.reactor.time() + self.limits.write_timeout)

    def _finish_closing(self) -> None:
        self.phase = CLOSED
        self.reactor.forget(self.sock)
        self.sock.close()
        self.slots.release(self)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def abort(self) -> None:
        """Close now, dropping whatever was not sent."""
        if self.phase is CLOSED:
            return
        self.outgoing.clear()
        self._finish_closing()

    def evict(self) -> None:
        """Make room at the connection cap: close now and free the slot at once."""
        self._close()
        self.slots.release(self)

    def _set_deadline(self, at: float) -> None:
        self.deadline = at
        if self.timer is None or at < self.timer.when:
            if self.timer is not None:
                self.timer.cancel()
            self.timer = self.reactor.call_at(at, self._on_deadline)

    def _on_deadline(self) -> None:
        self.timer = None
        if self.phase is CLOSED:
            return
        if self.reactor.time() < self.deadline:
            self._set_deadline(self.deadline)  # the deadline moved later since arming
            return
        phase = self.phase
        if phase in (CLOSING, WRITE_BLOCKED):
            self.abort()  # the client won't take what it was sent
        elif phase is BODY or not self.buffer:
            self._close()  # idle, or a body that never came: close without an answer
        else:
            self._refuse(BadRequest(408, "request head not received in time"))
