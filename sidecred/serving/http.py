"""HTTP plumbing the webhook and the broker share: `GET /metrics` and the last-resort
error handler (an unexpected exception is logged, never sent to the caller)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from fastapi import FastAPI, Request
from fastapi.responses import Response


class RendersMetrics(Protocol):
    @property
    def content_type(self) -> str: ...

    def render(self) -> bytes: ...


def add_metrics_and_last_resort(
    app: FastAPI,
    metrics: RendersMetrics,
    logger: logging.Logger,
    internal_error: Callable[[], Response],
) -> None:
    """`GET /metrics`, and the last resort for an unexpected exception: logged with its
    traceback, answered with `internal_error()` (never a traceback to the caller)."""

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        return Response(metrics.render(), media_type=metrics.content_type)

    @app.exception_handler(Exception)
    async def unexpected_error(_: Request, exc: Exception) -> Response:
        logger.error("unhandled error: %s", type(exc).__name__, exc_info=exc)
        return internal_error()
