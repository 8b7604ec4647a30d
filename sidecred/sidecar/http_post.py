"""One HTTP/1.1 POST over a socket (TLS optional, through a CONNECT proxy optional).

What `sidecred fetch` needs to reach STS or the broker, without `http.client`,
whose imports (the `email` package) cost about 2 MB in each fetch child. One
request per connection (`Connection: close`); the answer is read by its
`Content-Length`, chunked, or to the end of the stream, up to a size cap.
"""

from __future__ import annotations

import socket

TYPE_CHECKING = False
if TYPE_CHECKING:
    import ssl
    from collections.abc import Mapping

MAX_HEAD_BYTES = 16 * 1024


class ProtocolError(Exception):
    """The peer (server or proxy) did not answer in HTTP/1.x."""


class Answer:
    """Status, headers (lower-case names) and body of one answer."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body


class Tunnel:
    """A CONNECT proxy to reach the server through, with its own headers (Proxy-Authorization)."""

    __slots__ = ("headers", "host", "port")

    def __init__(self, host: str, port: int, headers: Mapping[str, str]) -> None:
        self.host = host
        self.port = port
        self.headers = dict(headers)


def authority(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def post(
    host: str,
    port: int,
    target: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    tls: ssl.SSLContext | None,
    connect_timeout: float,
    read_timeout: float,
    max_body: int,
    tunnel: Tunnel | None = None,
    via: tuple[str, int] | None = None,
) -> Answer:
    """POST `body` to `target` on host:port; OSError or ProtocolError when it fails.

    `tunnel`: reach host:port through a CONNECT proxy. `via`: send the request
    itself to a plain HTTP proxy at that address (`target` is then an absolute URL).
    Connecting, the tunnel and the TLS handshake share `connect_timeout`; the
    answer has `read_timeout` per read. A body over `max_body` bytes is cut at
    `max_body + 1`, for the caller to refuse.
    """
    address = via or ((tunnel.host, tunnel.port) if tunnel else (host, port))
    sock = socket.create_connection(address, timeout=connect_timeout)
    try:
        if tunnel is not None:
            _open_tunnel(sock, host, port, tunnel, max_body)
        if tls is not None:
            sock = tls.wrap_socket(sock, server_hostname=host)
        sock.settimeout(read_timeout)
        head = [f"POST {target} HTTP/1.1", f"Host: {authority(host, port)}"]
        head += [f"{name}: {value}" for name, value in headers.items()]
        head += [f"Content-Length: {len(body)}", "Connection: close", "", ""]
        sock.sendall("\r\n".join(head).encode("latin-1") + body)
        return read_answer(_Reader(sock), max_body)
    finally:
        sock.close()


def _open_tunnel(sock: socket.socket, host: str, port: int, tunnel: Tunnel, max_body: int) -> None:
    where = authority(host, port)
    head = [f"CONNECT {where} HTTP/1.1", f"Host: {where}"]
    head += [f"{name}: {value}" for name, value in tunnel.headers.items()]
    sock.sendall(("\r\n".join([*head, "", ""])).encode("latin-1"))
    reader = _Reader(sock)
    status, _ = _read_head(reader)
    if status != 200:
        raise OSError(
            f"the proxy {authority(tunnel.host, tunnel.port)} refused the tunnel ({status})"
        )
    if reader.buffer:
        raise ProtocolError("the proxy sent data before the tunnel was open")


class _Reader:
    """Buffered reads from a socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()
        self.ended = False

    def fill(self) -> bool:
        if self.ended:
            return False
        data = self.sock.recv(65536)
        if not data:
            self.ended = True
            return False
        self.buffer += data
        return True

    def line(self, limit: int) -> bytes:
        while (end := self.buffer.find(b"\n")) < 0:
            if len(self.buffer) > limit or not self.fill():
                raise ProtocolError("the answer's head is cut short or too long")
        line = bytes(self.buffer[: end + 1])
        del self.buffer[: end + 1]
        return line

    def exactly(self, count: int) -> bytes:
        while len(self.buffer) < count:
            if not self.fill():
                raise ProtocolError("the answer ended before its announced length")
        data = bytes(self.buffer[:count])
        del self.buffer[:count]
        return data


def _read_head(reader: _Reader) -> tuple[int, dict[str, str]]:
    status_line = reader.line(MAX_HEAD_BYTES).decode("latin-1")
    version, _, rest = status_line.partition(" ")
    code = rest[:3]
    if not version.startswith("HTTP/1.") or not (code.isascii() and code.isdigit()):
        raise ProtocolError(f"not an HTTP answer: {status_line.strip()[:80]!r}")
    headers: dict[str, str] = {}
    size = len(status_line)
    while (line := reader.line(MAX_HEAD_BYTES).decode("latin-1")) not in ("\r\n", "\n"):
        size += len(line)
        if size > MAX_HEAD_BYTES:
            raise ProtocolError("the answer's head is too long")
        name, sep, value = line.partition(":")
        if not sep:
            raise ProtocolError(f"a malformed header line: {line.strip()[:80]!r}")
        key = name.strip().lower()
        headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
    return int(code), headers


def read_answer(reader: _Reader, max_body: int) -> Answer:
    status, headers = _read_head(reader)
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = _read_chunked(reader, max_body)
    elif "content-length" in headers:
        length = headers["content-length"]
        if not (length.isascii() and length.isdigit()):
            raise ProtocolError(f"a malformed Content-Length {length[:20]!r}")
        body = reader.exactly(min(int(length), max_body + 1))
    else:  # to the end of the stream
        while len(reader.buffer) <= max_body and reader.fill():
            pass
        body = bytes(reader.buffer[: max_body + 1])
    return Answer(status, headers, body)


def _read_chunked(reader: _Reader, max_body: int) -> bytes:
    body = bytearray()
    while len(body) <= max_body:
        size_text = reader.line(1024).split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise ProtocolError(f"a malformed chunk size {size_text[:20]!r}") from None
        if size == 0:
            break
        body += reader.exactly(size)
        reader.line(1024)  # the CRLF after the chunk
    return bytes(body[: max_body + 1])
