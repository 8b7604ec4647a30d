"""Serving the broker so that it stays up against abuse (any pod can reach it).

uvicorn bounds idle keep-alive connections but not the time a client may take
to send a request, so a slow client could hold a connection forever. The
protocol below gives every request a deadline from the connection's first
byte (or the previous response) to its complete head; the connection cap,
header size cap and keep-alive timeout are uvicorn's own settings.
"""

from __future__ import annotations

import asyncio
import ssl

import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol

# A request head must arrive within this many seconds (the sidecar sends it at once).
REQUEST_HEAD_SECONDS = 10.0
# Connections and in-flight requests beyond this are answered 503 at once.
MAX_CONNECTIONS = 1000
# Largest request head accepted; beyond it the client gets 400.
MAX_HEAD_BYTES = 16 * 1024
KEEP_ALIVE_SECONDS = 15


class HeadDeadlineProtocol(H11Protocol):
    """uvicorn's h11 protocol, closing a connection whose request head is not in on time."""

    _head_timer: asyncio.TimerHandle | None = None

    def _arm(self) -> None:
        self._disarm()
        self._head_timer = self.loop.call_later(REQUEST_HEAD_SECONDS, self._head_timeout)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timeout(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def handle_events(self) -> None:
        super().handle_events()
        if self.cycle is not None and not self.cycle.response_complete:
            self._disarm()  # a request is being answered

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


def server_config(app: FastAPI, host: str, port: int, tls: ssl.SSLContext) -> uvicorn.Config:
    """uvicorn settings for a TLS server any pod can reach."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=HeadDeadlineProtocol,
        ssl_context_factory=lambda _config, _default: tls,
        limit_concurrency=MAX_CONNECTIONS,
        h11_max_incomplete_event_size=MAX_HEAD_BYTES,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=10,
    )
