"""moto_server behind a fault-injecting HTTP proxy on loopback, switched at run time.

The sidecar is pointed at the proxy (`AWS_ENDPOINT_URL_STS`); a test sets
`proxy.mode` to make STS answer normally, slowly, with an error, or not at all
(the listening socket is closed, so connections are refused). Every call is
recorded with its monotonic start time and the mode that answered it, so a
test can count retries and read the gaps between them.

Pass-through answers can have their `<Expiration>` moved to `expires_in`
seconds from now: short sessions make the sidecar refresh within seconds.
"""

from __future__ import annotations

import re
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.support.scripted_sts import error_xml
from tests.support.sts import MotoServer, create_role

SLOW_SECONDS = 5.0  # below botocore's 10 s read timeout: a slow answer still arrives
ACCESS_DENIED_MESSAGE = (
    "User: arn:aws:sts::123456789012:assumed-role/node/i-0abc is not authorized to perform: "
    "sts:AssumeRoleWithWebIdentity on resource: arn:aws:iam::123456789012:role/reader (H8b-7731)"
)

# mode -> (HTTP status, STS error code, message) for the modes that answer with an error.
ERRORS: dict[str, tuple[int, str, str]] = {
    "throttling": (400, "Throttling", "Rate exceeded"),
    "server-error": (500, "InternalFailure", "The request processing has failed (fault-injected)"),
    "access-denied": (403, "AccessDenied", ACCESS_DENIED_MESSAGE),
    "expired-token": (
        400,
        "ExpiredTokenException",
        "Token expired: current date/time 1700000000 must be before the expiration date/time 1699999000",
    ),
    "invalid-token": (
        400,
        "InvalidIdentityToken",
        "Couldn't retrieve verification key from your identity provider, please reference AssumeRoleWithWebIdentity documentation for requirements",
    ),
}
MODES = ("pass", "slow", "refused", *ERRORS)
_EXPIRATION = re.compile(rb"<Expiration>[^<]*</Expiration>")


@dataclass(frozen=True)
class Call:
    at: float  # time.monotonic() when the request arrived
    mode: str
    action: str


class StsFaultProxy:
    """A loopback proxy in front of `upstream` (moto_server) whose behaviour a test switches."""

    def __init__(self, upstream: str, port: int = 0) -> None:
        self.upstream = upstream
        self.expires_in: float | None = None
        self.calls: list[Call] = []
        self.in_flight = 0
        self._mode = "pass"
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._listen(port)
        assert self._server is not None
        self.port = int(self._server.server_address[1])
        self.url: str = f"http://127.0.0.1:{self.port}"

    # --- control ---------------------------------------------------------------
    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; one of {', '.join(MODES)}")
        if mode == "refused":
            self._unlisten()
        elif self._server is None:
            self._listen(self.port)
        self._mode = mode

    def calls_in(self, mode: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.mode == mode]

    def close(self) -> None:
        self._closing.set()  # ends slow answers early
        self._unlisten()

    # --- listener --------------------------------------------------------------
    def _listen(self, port: int) -> None:
        server = ThreadingHTTPServer(("127.0.0.1", port), _handler(self))
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()

    def _unlisten(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    # --- answering -------------------------------------------------------------
    def answer(self, body: bytes) -> tuple[int, bytes]:
        mode = self._mode
        params = dict(urllib.parse.parse_qsl(body.decode("utf-8", "replace")))
        with self._lock:
            self.calls.append(Call(time.monotonic(), mode, params.get("Action", "")))
            self.in_flight += 1
        try:
            if mode in ERRORS:
                status, code, message = ERRORS[mode]
                return status, error_xml(code, message).encode()
            if mode == "slow" and self._closing.wait(SLOW_SECONDS):
                return 503, error_xml("ServiceUnavailable", "proxy closing").encode()
            return self._forward(body)
        finally:
            with self._lock:
                self.in_flight -= 1

    def _forward(self, body: bytes) -> tuple[int, bytes]:
        request = urllib.request.Request(
            self.upstream + "/",
            data=body,
            headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as resp:
                status, data = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        if status == 200 and self.expires_in is not None:
            expires = datetime.now(UTC) + timedelta(seconds=self.expires_in)
            stamp = expires.strftime("%Y-%m-%dT%H:%M:%SZ").encode()
            data = _EXPIRATION.sub(b"<Expiration>" + stamp + b"</Expiration>", data)
        return status, data


def _handler(proxy: StsFaultProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            status, data = proxy.answer(body)
            self.send_response(status)
            self.send_header("Content-Type", "text/xml")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            try:
                self.wfile.write(data)
            except OSError:
                pass  # the sidecar gave up on a slow answer

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


def refuses_connections(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


@pytest.fixture
def sts_proxy_factory(
    moto_sts_module: MotoServer,
) -> Iterator[Callable[[], StsFaultProxy]]:
    """Start proxies in front of the module's moto_server (role "reader" created); all closed at teardown."""
    create_role_once(moto_sts_module)
    proxies: list[StsFaultProxy] = []

    def start() -> StsFaultProxy:
        proxy = StsFaultProxy(moto_sts_module.url)
        proxies.append(proxy)
        return proxy

    yield start
    for proxy in proxies:
        proxy.close()


_roles_created: set[str] = set()


def create_role_once(moto: MotoServer) -> None:
    if moto.url not in _roles_created:
        create_role(moto.url, "reader")
        _roles_created.add(moto.url)


@pytest.fixture
def sts_proxy(sts_proxy_factory: Callable[[], StsFaultProxy]) -> StsFaultProxy:
    return sts_proxy_factory()
