"""HTTP plumbing the webhook and the broker share: the health probes, `GET /metrics` and
the last-resort error handler (an unexpected exception is logged, never sent to the caller)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from sidecred.serving.drain import DRAINING, Drain


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


def add_health_probes(
    app: FastAPI, drain: Drain | None, not_synced: Callable[[], str | None]
) -> None:
    """`GET /healthz`, always ok, and `GET /readyz`: 503 while draining, or with the reason
    `not_synced()` gives while the server's caches are not ready."""

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> Response:
        reason = DRAINING if drain is not None and drain.draining else not_synced()
        if reason is None:
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "not ready", "reason": reason}, status_code=503)
