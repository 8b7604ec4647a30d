"""Slow and idle connections against a real sidecar process.

More connections than the sidecar's cap, some sending a byte every few hundred
milliseconds and never finishing a request head, some sending nothing: a
normal client must still get its credentials, and every one of the slow and
idle connections must be closed by the server once the header timeout passes.
"""

from __future__ import annotations

import http.client
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from sidecred.dev.processes import wait_until
from sidecred.sidecar.server import Limits
from tests.sidecar.sidecar_process import WAIT_SECONDS, sidecar_env

pytestmark = pytest.mark.slow

LIMITS = Limits()  # what the sidecar process runs with
SLOW = 100
IDLE = LIMITS.max_connections - SLOW + 40  # together 40 over the cap
# Never finishes: a request line, then one endless header value.
SLOW_HEAD = b"GET /v1/credentials HTTP/1.1\r\nX-Pad: " + b"a" * 10_000


class Loris:
    """One client connection; `closed()` is true once the server has closed it."""

    def __init__(self, port: int, slow: bool) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock.setblocking(False)
        self.slow = slow
        self.sent = 0
        self.received = bytearray()
        self.gone = False

    def send_next_byte(self) -> None:
        if self.gone or not self.slow:
            return
        try:
            self.sent += self.sock.send(SLOW_HEAD[self.sent : self.sent + 1])
        except BlockingIOError:
            pass
        except OSError:
            self.gone = True

    def closed(self) -> bool:
        while not self.gone:
            try:
                chunk = self.sock.recv(4096)
            except BlockingIOError:
                return False
            except OSError:
                self.gone = True
                break
            if not chunk:
                self.gone = True
            self.received += chunk
        return True


@pytest.fixture
def lorises() -> Iterator[list[Loris]]:
    opened: list[Loris] = []
    yield opened
    for loris in opened:
        loris.sock.close()


def drip(lorises: list[Loris], stop: threading.Event) -> None:
    """A byte to every slow connection every 300 ms, until `stop`."""
    while not stop.wait(0.3):
        for loris in lorises:
            loris.send_next_byte()


def test_slow_and_idle_connections_neither_lock_out_clients_nor_linger(
    sts_proxy, sidecar_factory, lorises, tmp_path: Path
):
    # The proxy in pass-through mode: moto with the role created.
    sidecar = sidecar_factory(sidecar_env(tmp_path, sts_proxy.url, token_mode="env"))
    sidecar.wait_ready()
    token = sidecar.token()

    for slow in [True] * SLOW + [False] * IDLE:
        lorises.append(Loris(sidecar.port, slow))
        lorises[-1].send_next_byte()
    stop = threading.Event()
    dripper = threading.Thread(target=drip, args=(lorises, stop), daemon=True)
    dripper.start()
    try:
        # Every connection has been taken in: those over the cap were turned away or made room.
        over = len(lorises) - LIMITS.max_connections
        wait_until(
            lambda: sum(c.closed() for c in lorises) >= over,
            timeout=WAIT_SECONDS,
            what="the connections over the cap",
        )

        def normal_client_served() -> bool:
            conn = http.client.HTTPConnection("127.0.0.1", sidecar.port, timeout=2)
            try:
                conn.request("GET", "/v1/credentials", headers={"Authorization": token})
                return conn.getresponse().status == 200
            finally:
                conn.close()

        # An SDK retries a refused fetch; give it a few seconds, well inside the header timeout.
        wait_until(
            normal_client_served,
            timeout=LIMITS.header_timeout / 2,
            what="credentials for a normal client",
        )

        # The slow and the idle are all closed by the server after the header timeout.
        wait_until(
            lambda: all(c.closed() for c in lorises),
            timeout=LIMITS.header_timeout + 10,
            what="every slow and idle connection closed",
        )
    finally:
        stop.set()
        dripper.join()
    timed_out = [c for c in lorises if c.received.startswith(b"HTTP/1.1 408 ")]
    assert timed_out  # slow heads are told why when they are cut off
    assert sidecar.process.poll() is None
    assert normal_client_served()
    assert '"event":"http_connection_failed"' not in sidecar.log()
