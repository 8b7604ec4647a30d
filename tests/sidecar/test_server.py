"""HTTP edge cases against the real server on its own loop, in-process on 127.0.0.1."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from sidecred.dev.processes import wait_until
from sidecred.sidecar.reactor import WRITE
from sidecred.sidecar.server import BadRequest, Limits, Request, Response, parse_head
from tests.support.reactor_server import RunningServer


def echo(request: Request) -> Response:
    if request.method != "GET":
        return Response(405, b'{"Code":"MethodNotAllowed"}')
    return Response(
        200, f"{request.target} {request.headers.get('x-odd', '')}".encode(), "text/plain"
    )


@pytest.fixture
def server_factory() -> Iterator:
    servers: list[Server] = []

    def factory(**limits) -> Server:
        srv = Server(echo, Limits(**limits))
        servers.append(srv)
        return srv

    yield factory
    for srv in servers:
        srv.close()


class Server(RunningServer):
    def connect(self) -> Client:
        return Client(socket.create_connection(("127.0.0.1", self.port), timeout=10))


class Client:
    """A raw socket with a buffered reader, so pipelined responses are not lost."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.file = sock.makefile("rb")

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def sendall(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def read_response(client: Client) -> tuple[int, dict[str, str], bytes]:
    status_line = client.file.readline()
    if not status_line:
        raise ConnectionError("closed before a response")
    headers: dict[str, str] = {}
    while (line := client.file.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.lower()] = value.strip()
    body = client.file.read(int(headers["content-length"]))
    return int(status_line.split()[1]), headers, body


def closed_by_server(client: Client) -> bool:
    try:
        return client.file.read(1) == b""
    except ConnectionResetError:
        return True


def test_keep_alive_serves_several_requests_on_one_connection(server_factory):
    srv = server_factory()
    with srv.connect() as sock:
        for path in ("/a", "/b", "/c"):
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            status, headers, body = read_response(sock)
            assert status == 200 and body.startswith(path.encode())
            assert "connection" not in headers


def test_pipelined_requests_are_answered_in_order(server_factory):
    srv = server_factory()
    with srv.connect() as sock:
        sock.sendall(b"GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\n")
        assert read_response(sock)[2].startswith(b"/1")
        assert read_response(sock)[2].startswith(b"/2")


def test_connection_close_and_http10(server_factory):
    srv = server_factory()
    with srv.connect() as sock:
        sock.sendall(b"GET /x HTTP/1.1\r\nConnection: close\r\n\r\n")
        status, headers, _ = read_response(sock)
        assert status == 200 and headers["connection"] == "close"
        assert closed_by_server(sock)
    with srv.connect() as sock:
        sock.sendall(b"GET /x HTTP/1.0\r\n\r\n")
        assert read_response(sock)[0] == 200
        assert closed_by_server(sock)


def test_oversized_headers_get_431(server_factory):
    srv = server_factory(max_header_bytes=1024)
    with srv.connect() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 4000 + b"\r\n\r\n")
        status, headers, _ = read_response(sock)
        assert status == 431 and headers["connection"] == "close"


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GARBAGE\r\n\r\n",
        b"GET /\r\n\r\n",
        b"GET / HTTP/1.1 extra\r\n\r\n",
        b"G(T / HTTP/1.1\r\n\r\n",
        b"GET / FTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nno colon here\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost : x\r\n\r\n",
        b"GET / HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
    ],
)
def test_malformed_requests_get_400_and_close(server_factory, request_bytes):
    srv = server_factory()
    with srv.connect() as sock:
        sock.sendall(request_bytes)
        status, headers, body = read_response(sock)
        assert status == 400 and headers["connection"] == "close"
        assert b'"Code"' in body
        assert closed_by_server(sock)


def test_wrong_method_reaches_the_handler(server_factory):
    srv = server_factory()
    with srv.connect() as sock:
        sock.sendall(b"DELETE / HTTP/1.1\r\n\r\nGET /after HTTP/1.1\r\n\r\n")
        assert read_response(sock)[0] == 405
        assert read_response(sock)[0] == 200


def test_small_body_is_drained(server_factory):
    srv = server_factory(max_drained_body=16)
    with srv.connect() as sock:
        sock.sendall(b"GET /a HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloGET /b HTTP/1.1\r\n\r\n")
        assert read_response(sock)[2].startswith(b"/a")
        assert read_response(sock)[2].startswith(b"/b")


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        pytest.param(b"GET / HTTP/2.0\r\n\r\n", 505, id="http2-preface"),
        pytest.param(b"POST / HTTP/1.1\r\nContent-Length: 100000\r\n\r\n", 413, id="large-body"),
        pytest.param(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 413, id="chunked"),
    ],
)
def test_a_request_the_server_will_not_read_gets_its_status(server_factory, request_bytes, status):
    srv = server_factory(max_drained_body=16)
    with srv.connect() as sock:
        sock.sendall(request_bytes)
        assert read_response(sock)[0] == status


def test_odd_headers_are_tolerated(server_factory):
    srv = server_factory()
    with srv.connect() as sock:
        sock.sendall(
            b"GET /odd HTTP/1.1\nX-ODD:\tvalue\xff \nx-odd: second\nX-Empty:\n\n"  # bare LF, latin-1
        )
        status, _, body = read_response(sock)
        assert status == 200
        assert body == "/odd value\xff, second".encode()


def test_slow_header_is_cut_off(server_factory):
    srv = server_factory(header_timeout=0.2)
    with srv.connect() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nX-Slow: ")  # never finishes the head
        status, headers, _ = read_response(sock)
        assert status == 408 and headers["connection"] == "close"
        assert closed_by_server(sock)


def test_idle_keep_alive_connection_is_closed(server_factory):
    srv = server_factory(idle_timeout=0.2)
    with srv.connect() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\n\r\n")
        read_response(sock)
        assert closed_by_server(sock)  # blocks until the idle timeout closes it


def test_connection_cap_refuses_extra_connections(server_factory):
    srv = server_factory(max_connections=2)
    held = [srv.connect(), srv.connect()]
    try:
        # Make sure both are being served (a request answered on each).
        for sock in held:
            sock.sendall(b"GET / HTTP/1.1\r\n\r\n")
            read_response(sock)
        with srv.connect() as extra:
            status, headers, _ = read_response(extra)
            assert status == 503 and headers["connection"] == "close"
    finally:
        for sock in held:
            sock.close()


def test_parse_head_joins_repeated_headers():
    req = parse_head(b"GET /p?q=1 HTTP/1.1\r\nA: 1\r\na: 2\r\n\r\n")
    assert req.target == "/p?q=1" and req.headers == {"a": "1, 2"}


def test_parse_head_rejects_empty():
    with pytest.raises(BadRequest):
        parse_head(b"\r\n")


def test_reason_phrases_are_the_standard_ones():
    from http import HTTPStatus

    from sidecred.sidecar.server import REASONS

    assert REASONS == {status: HTTPStatus(status).phrase for status in REASONS}


def test_a_half_closed_client_that_does_not_read_is_not_polled_for_reads():
    """While a closing answer waits for the client, the end of its stream is read once.

    An end of stream stays readable: watching for reads after it would wake the loop
    for ever (a busy loop) until the write timeout.
    """
    big = b"x" * (4 * 1024 * 1024)  # more than the kernel takes at once

    def handler(request: Request) -> Response:
        return Response(200, big, "application/octet-stream")

    srv = Server(handler, Limits(write_timeout=3600.0))
    try:
        client = socket.socket()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client.connect(("127.0.0.1", srv.port))
        client.sendall(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
        client.shutdown(socket.SHUT_WR)

        def watched_events() -> int | None:
            """What the loop watches the one client connection for (None: not watched)."""
            keys = list(srv.reactor.selector.get_map().values())
            conns = [k for k in keys if getattr(k.data, "__name__", "") == "_on_ready"]
            return conns[0].events if conns else None

        wait_until(
            lambda: watched_events() == WRITE, 10.0, "the closing connection to watch writes only"
        )
        assert srv.active == 1  # still open, its answer still waiting for the client
        received = 0
        while chunk := client.recv(1 << 20):
            received += len(chunk)
        assert received > len(big)  # head and the whole body, then the server closed
        client.close()
    finally:
        srv.close()


def test_parsed_heads_are_remembered_bounded_and_refusals_never():
    from sidecred.sidecar.server import _PARSED_CAP, HttpServer

    server = HttpServer(echo, "127.0.0.1", 0)
    head = b"GET /v1/credentials HTTP/1.1\r\nAuthorization: tok\r\nConnection: close"
    first = server.parse(head)
    assert server.parse(bytes(head)) is first  # the same bytes: parsed once
    request, to_drain, keep_alive = first
    assert (request.target, request.headers["authorization"], to_drain, keep_alive) == (
        "/v1/credentials",
        "tok",
        0,
        False,
    )
    for n in range(3 * _PARSED_CAP):
        server.parse(f"GET /{n} HTTP/1.1\r\nHost: x".encode())
    assert len(server._parsed) <= _PARSED_CAP
    with pytest.raises(BadRequest):
        server.parse(b"GET / HTTP/2.0")
    with pytest.raises(BadRequest):
        server.parse(b"GET / HTTP/2.0")  # refused again: refusals are not remembered
    long_head = b"GET / HTTP/1.1\r\nX-Pad: " + b"a" * 2048
    server.parse(long_head)
    assert long_head not in server._parsed  # long heads are parsed every time
    server.reactor.close()
