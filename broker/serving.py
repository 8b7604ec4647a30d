"""Serving the broker as the webhook is served: any pod can reach either (webhook.limits).

The same limits: a deadline on reading each request, bounded TLS handshakes and
read buffers, a connection cap, capped heads and short keep-alive.
"""

from __future__ import annotations

import ssl

import uvicorn
from fastapi import FastAPI

from sidecred.webhook.limits import (
    KEEP_ALIVE_SECONDS,
    MAX_HEAD_BYTES,
    DeadlineH11Protocol,
    apply_tls_limits,
)


def server_config(app: FastAPI, host: str, port: int, tls: ssl.SSLContext) -> uvicorn.Config:
    """uvicorn settings for the broker over TLS, with the webhook's limits applied."""
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
