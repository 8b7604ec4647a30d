"""Keeping the webhook up against abuse (SECURITY.md, Path 5): any pod can reach it.

Every connection must deliver a complete request (head and body) within
REQUEST_DEADLINE_SECONDS of its TLS handshake or of its previous response, or it
is closed; the handshake itself must finish within TLS_HANDSHAKE_SECONDS. At
most MAX_CONNECTIONS are served at once. A connection arriving at the cap takes
the place of the one that has waited longest for a complete request, if that
has waited WAITED_SECONDS (an API server sends its request at once, so what waits
is idle or slow); else it is closed. Each holds a bounded amount of memory: a
request head of at most MAX_HEAD_BYTES, a TLS read buffer of
TLS_READ_BUFFER_BYTES, at most TLS_PAUSED_READ_KIB of encrypted and
UNREAD_BODY_BYTES of plain body while its request waits for room in the body
budget (serving.body_budget, which holds the bodies being read).

uvicorn has no head timeout, and asyncio's TLS layer gives every connection a
256 KiB read buffer and a 60 s handshake limit with no option to change either
through uvicorn; `apply_tls_limits` sets both process-wide before serving, and
with them how much of a body uvicorn buffers before the app reads it (a request
waiting for room in the body budget holds no more than that).
bench/idle_connections.py measures the effect (figures in bench/RESULTS.md).
"""

from __future__ import annotations

import asyncio
import asyncio.constants
import asyncio.sslproto
import logging
import ssl
from typing import Any

import uvicorn
from uvicorn.protocols.http import h11_impl
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("sidecred.webhook")

REQUEST_DEADLINE_SECONDS = 10.0
TLS_HANDSHAKE_SECONDS = 10.0
# How long a closing TLS connection waits for the peer's close_notify (asyncio's own
# is 30 s: a peer that never answers kept every connection it was refused alive).
TLS_SHUTDOWN_SECONDS = 2.0
# Each connection costs up to about 200 KB with its TLS state and buffers full
# (bench/siege.py measured 1,000 at +190 MB), so 256 cost at most about 50 MB.
MAX_CONNECTIONS = 256
WAITED_SECONDS = 1.0  # a connection waiting this long for its request may make room
MAX_HEAD_BYTES = 16 * 1024
# One TLS record carries at most 16 KiB of plaintext; asyncio reads the socket into this.
TLS_READ_BUFFER_BYTES = 17 * 1024
# Encrypted bytes asyncio's TLS layer buffers for a connection whose reading is
# paused (its request waits for room) before it stops reading the socket (KiB;
# asyncio's own is 256).
TLS_PAUSED_READ_KIB = 32
# Body bytes uvicorn buffers for a request the app has not read yet (one that waits for
# room in serving.body_budget) before it stops reading the socket; uvicorn's own is 64 KiB.
UNREAD_BODY_BYTES = 16 * 1024
KEEP_ALIVE_SECONDS = 5


def apply_tls_limits() -> None:
    """Bound asyncio's per-connection TLS read buffer and its handshake and shutdown times,
    and uvicorn's unread body buffer, process-wide."""
    asyncio.sslproto.SSLProtocol.max_size = TLS_READ_BUFFER_BYTES
    asyncio.constants.SSL_HANDSHAKE_TIMEOUT = TLS_HANDSHAKE_SECONDS
    asyncio.constants.SSL_SHUTDOWN_TIMEOUT = TLS_SHUTDOWN_SECONDS
    asyncio.constants.FLOW_CONTROL_HIGH_WATER_SSL_READ = TLS_PAUSED_READ_KIB  # type: ignore[misc]
    h11_impl.HIGH_WATER_LIMIT = UNREAD_BODY_BYTES  # type: ignore[attr-defined]


class DeadlineH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline on reading each request and a connection cap."""

    _deadline: asyncio.TimerHandle | None = None
    _waiting_since: float | None = None  # loop time its current request was awaited from

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        at_cap = len(self.connections) >= MAX_CONNECTIONS
        super().connection_made(transport)
        if at_cap and not self._make_room():
            log.warning(
                "connection refused: at the cap",
                extra={"fields": {"connections": len(self.connections)}},
            )
            transport.abort()
            return
        self._arm_deadline()

    def _make_room(self) -> bool:
        """Close the connection that has waited longest, at least WAITED_SECONDS, for a
        complete request; False when none has."""
        waiting = [
            (c._waiting_since, c)
            for c in self.connections
            if isinstance(c, DeadlineH11Protocol) and c is not self and c._waiting_since is not None
        ]
        if not waiting:
            return False
        since, oldest = min(waiting, key=lambda pair: pair[0])
        if self.loop.time() - since < WAITED_SECONDS:
            return False
        oldest._cancel_deadline()
        oldest.transport.abort()  # no TLS goodbye for a connection that sent nothing usable
        return True

    def _arm_deadline(self) -> None:
        self._cancel_deadline()
        self._deadline = self.loop.call_later(REQUEST_DEADLINE_SECONDS, self._deadline_passed)
        self._waiting_since = self.loop.time()

    def _cancel_deadline(self) -> None:
        self._waiting_since = None
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _deadline_passed(self) -> None:
        """Close a connection whose request did not arrive in time (none is being answered)."""
        self._deadline = None
        self._waiting_since = None
        if self.transport.is_closing():
            return
        if self._answering():
            return  # the whole request arrived; the app is answering it
        self.transport.abort()

    def _answering(self) -> bool:
        cycle = self.cycle
        return cycle is not None and not cycle.more_body and not cycle.response_complete

    def handle_events(self) -> None:
        super().handle_events()
        if self._answering():
            self._cancel_deadline()  # read in full: the deadline is met

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_deadline()  # the next request on this connection has its own deadline

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        super().connection_lost(exc)


def server_config(app: Any, host: str, port: int, tls: ssl.SSLContext) -> uvicorn.Config:
    """uvicorn settings for a sidecred TLS server (the webhook, the broker) with these limits.

    Also applies the process-wide TLS limits (`apply_tls_limits`).
    """
    apply_tls_limits()
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        ssl_context_factory=lambda _config, _default: tls,
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=10,
        loop="asyncio",
        http=DeadlineH11Protocol,
        h11_max_incomplete_event_size=MAX_HEAD_BYTES,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
    )
