"""The broker's HTTP app: `POST /v1/credentials`, `/healthz`, `/readyz`, `/metrics`.

The issuance runs in a worker thread (a cache miss waits on the API server or
STS). Log lines name the caller and the result, never the token or a key.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from sidecred.broker.issuer import Issuer, refused
from sidecred.broker.metrics import BrokerMetrics
from sidecred.pods.refusal import Refusal
from sidecred.serving.drain import DRAINING, Drain
from sidecred.serving.http import add_metrics_and_last_resort

log = logging.getLogger("sidecred.broker")

JSON_MEDIA_TYPE = "application/json"
CREDENTIALS_PATH = "/v1/credentials"


class Syncing(Protocol):
    kind: str
    last_error: str

    @property
    def synced(self) -> bool: ...


def create_app(
    issuer: Issuer,
    caches: list[Syncing],
    metrics: BrokerMetrics,
    *,
    clock: Callable[[], float] = time.perf_counter,
    drain: Drain | None = None,
) -> FastAPI:
    app = FastAPI(title="sidecred broker", docs_url=None, redoc_url=None, openapi_url=None)

    async def credentials(request: Request) -> Response:
        started = clock()
        try:
            answer = await run_in_threadpool(issuer.issue, request.headers.get("authorization"))
        except Exception:
            log.exception("issuance failed unexpectedly")
            message = "sidecred broker: internal error; see the broker's log"
            answer = refused(Refusal("InternalError", message, 503))
        elapsed = clock() - started
        metrics.issuances.labels(answer.result).inc()
        metrics.issuance_latency.observe(elapsed)
        caller = answer.caller
        fields: dict[str, object] = {
            "result": answer.result,
            "status": answer.status,
            "duration_ms": round(elapsed * 1000, 3),
        }
        if caller is not None:
            fields.update(namespace=caller.namespace, pod=caller.pod_name, uid=caller.pod_uid)
        if answer.detail:
            fields["detail"] = answer.detail
        log.info("issuance", extra={"fields": fields})
        return Response(answer.body, status_code=answer.status, media_type=JSON_MEDIA_TYPE)

    app.add_route(CREDENTIALS_PATH, credentials, methods=["POST"])

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> Response:
        if drain is not None and drain.draining:
            return JSONResponse({"status": "not ready", "reason": DRAINING}, status_code=503)
        waiting = [cache for cache in caches if not cache.synced]
        if not waiting:
            return JSONResponse({"status": "ready"})
        reasons = [
            f"{cache.kind} cache has not synced: {cache.last_error or 'waiting for the first list'}"
            for cache in waiting
        ]
        return JSONResponse({"status": "not ready", "reason": "; ".join(reasons)}, status_code=503)

    add_metrics_and_last_resort(
        app,
        metrics,
        log,
        lambda: Response(
            Refusal("InternalError", "internal error", 503).error_body(),
            status_code=503,
            media_type=JSON_MEDIA_TYPE,
        ),
    )

    return app
