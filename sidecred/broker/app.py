"""The broker's HTTP app: `POST /v1/credentials[?container=<c>]`, `/healthz`, `/readyz`,
`/metrics`.

The issuance runs in a worker thread (a cache miss waits on the API server or
STS). Log lines name the caller and the result, never the token or a key.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from sidecred.broker.issuer import Answer, Issuer, refused
from sidecred.broker.metrics import BrokerMetrics
from sidecred.pods.annotations import q
from sidecred.pods.dns_names import is_dns1123_label
from sidecred.pods.refusal import Refusal
from sidecred.serving.drain import Drain
from sidecred.serving.http import add_health_probes, add_metrics_and_last_resort

log = logging.getLogger("sidecred.broker")

JSON_MEDIA_TYPE = "application/json"
CREDENTIALS_PATH = "/v1/credentials"
CONTAINER_PARAM = "container"  # ?container=<c>: that container's own role


def requested_container(values: list[str]) -> str | Refusal:
    """The container named by the query ("" for the pod's role), or a 400 saying what is wrong."""
    if not values:
        return ""
    if len(values) > 1:
        return Refusal("InvalidContainer", "sidecred broker: name one container at most", 400)
    if not is_dns1123_label(values[0]):  # a container name
        return Refusal(
            "InvalidContainer",
            f"sidecred broker: container={q(values[0], 80)} is not a container name "
            "(a DNS-1123 label)",
            400,
        )
    return values[0]


class Syncing(Protocol):
    kind: str

    @property
    def synced(self) -> bool: ...

    @property
    def progress(self) -> str: ...


def record_issuance(answer: Answer, elapsed: float, metrics: BrokerMetrics) -> None:
    """Count one answer (by result and role: the pod's or a container's own) and log it."""
    metrics.issuances.labels(answer.result, "container" if answer.container else "pod").inc()
    metrics.issuance_latency.observe(elapsed)
    caller = answer.caller
    fields: dict[str, object] = {
        "result": answer.result,
        "status": answer.status,
        "duration_ms": round(elapsed * 1000, 3),
    }
    if caller is not None:
        fields.update(namespace=caller.namespace, pod=caller.pod_name, uid=caller.pod_uid)
    if answer.container:
        fields["container"] = answer.container
    if answer.detail:
        fields["detail"] = answer.detail
    log.info("issuance", extra={"fields": fields})


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
        container = requested_container(request.query_params.getlist(CONTAINER_PARAM))
        try:
            if isinstance(container, Refusal):
                answer = refused(container)
            else:
                answer = await run_in_threadpool(
                    issuer.issue, request.headers.get("authorization"), container
                )
        except Exception:
            log.exception("issuance failed unexpectedly")
            message = "sidecred broker: internal error; see the broker's log"
            answer = refused(Refusal("InternalError", message, 503))
        record_issuance(answer, clock() - started, metrics)
        return Response(answer.body, status_code=answer.status, media_type=JSON_MEDIA_TYPE)

    app.add_route(CREDENTIALS_PATH, credentials, methods=["POST"])

    def not_synced() -> str | None:
        reasons = [
            f"{cache.kind} cache has not synced: {cache.progress}"
            for cache in caches
            if not cache.synced
        ]
        return "; ".join(reasons) or None

    add_health_probes(app, drain, not_synced)

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
