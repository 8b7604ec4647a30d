"""Raw-socket HTTP for abuse tests: send exact bytes, read until close, check what came back."""

from __future__ import annotations

import json
import re
import socket
from dataclasses import dataclass

_STATUS_LINE = re.compile(rb"HTTP/1\.1 (\d{3}) [A-Za-z' -]+")


@dataclass(frozen=True)
class RawResponse:
    status: int
    headers: dict[bytes, bytes]  # lower-case names
    body: bytes


@dataclass(frozen=True)
class Exchange:
    data: bytes  # everything received before the close
    reset: bool  # the connection ended with a reset rather than a FIN


def exchange(port: int, payload: bytes, *, timeout: float = 10.0) -> Exchange:
    """Send `payload`, half-close, and read until the server closes."""
    received = bytearray()
    reset = False
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
        except OSError:  # EPIPE, ECONNRESET or ENOTCONN: the server closed early
            reset = True  # (e.g. it refused an oversized head before reading it all)
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except ConnectionResetError:
            reset = True
    return Exchange(bytes(received), reset)


def parse_responses(data: bytes, *, head_sent: bool = False) -> list[RawResponse]:
    """Split `data` into well-formed HTTP/1.1 responses; AssertionError if anything is malformed.

    A response to HEAD has no body; with `head_sent`, a response whose body
    (always JSON on the credential port) doesn't follow is taken as one.
    """
    responses: list[RawResponse] = []
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        assert sep, f"truncated response head: {data[:300]!r}"
        status_line, *header_lines = head.split(b"\r\n")
        match = _STATUS_LINE.fullmatch(status_line)
        assert match, f"malformed status line: {status_line!r}"
        headers: dict[bytes, bytes] = {}
        for line in header_lines:
            name, colon, value = line.partition(b": ")
            assert colon and name and b"\n" not in line, f"malformed header: {line!r}"
            headers[name.lower()] = value
        length = int(headers[b"content-length"])
        if head_sent and length and not rest.startswith(b"{"):
            length = 0
        assert len(rest) >= length, f"body shorter than Content-Length {length}: {rest!r}"
        body, data = rest[:length], rest[length:]
        if body and headers[b"content-type"].startswith(b"application/json"):
            json.loads(body)
        responses.append(RawResponse(int(match[1]), headers, body))
    return responses
