"""The webhook's HTTP app: parse, look the namespace up, call the pure core, serialise.

Two error channels: a request that is not a usable AdmissionReview gets a 4xx
JSON error (the API server then applies the webhook's failurePolicy); an
unexpected failure while deciding a well-formed review gets an AdmissionReview
denial for its uid (fail closed). Neither ever carries a traceback.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from sidecred.kube.watch import CACHE, NamespaceSource
from sidecred.pods.settings import Settings
from sidecred.serving.drain import Drain
from sidecred.serving.http import add_health_probes, add_metrics_and_last_resort
from sidecred.webhook.decide import (
    Decision,
    decide_mutation,
    decide_validation,
    namespace_to_lookup,
)
from sidecred.webhook.metrics import WebhookMetrics
from sidecred.webhook.namespace_review import with_namespace_review
from sidecred.webhook.review import MAX_REVIEW_BYTES, ReviewError, build_review, parse_review

log = logging.getLogger("sidecred.webhook")

JSON_MEDIA_TYPE = "application/json"
INTERNAL_ERROR_MESSAGE = (
    "sidecred: internal error while deciding this request; it is refused (fail closed). "
    "See the webhook's log for details."
)


Decide = Callable[..., Decision]


async def read_capped_body(request: Request, limit: int) -> bytes:
    """The body, refusing (413) anything over `limit` without reading it all."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise ReviewError(400, f"Content-Length {declared[:20]!r} is not a number")
        if int(declared) > limit:
            raise ReviewError(413, f"AdmissionReview is {declared} bytes; the limit is {limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ReviewError(413, f"AdmissionReview is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def check_content_type(request: Request) -> None:
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != JSON_MEDIA_TYPE:
        raise ReviewError(
            415, f"expected Content-Type {JSON_MEDIA_TYPE}, got {media_type or 'none'!r}"
        )


def error_response(status_code: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status_code)


@dataclass
class Admission:
    """One admission request at the HTTP edge: read it, look its namespace up, decide, answer."""

    config: Settings
    namespaces: NamespaceSource
    metrics: WebhookMetrics
    clock: Callable[[], float] = time.perf_counter

    async def look_up_namespace(
        self, request: dict[str, Any]
    ) -> tuple[Mapping[str, Any] | None, str]:
        """The namespace the request needs (or None) and why it could not be read.

        A cache hit is answered on the event loop; only a miss, which may wait on
        the API server, goes to the thread pool. The decision itself is pure and
        takes tens of microseconds, less than a thread-pool round trip.
        """
        name = namespace_to_lookup(request, self.config)
        if name is None:
            return None, ""
        # A cache that can answer without blocking (kube.watch.NamespaceCache.cached).
        cached: Callable[[str], Mapping[str, Any] | None] | None = getattr(
            self.namespaces, "cached", None
        )
        namespace = cached(name) if cached is not None else None
        if namespace is not None:
            self.metrics.record_namespace_lookup(CACHE)
            return namespace, ""
        lookup = await run_in_threadpool(self.namespaces.get, name)
        self.metrics.record_namespace_lookup(lookup.source)
        return lookup.object, lookup.error

    async def read(self, webhook: str, http_request: Request) -> dict[str, Any] | Response:
        """The AdmissionRequest, or the 4xx answer for a request that is not a usable review."""
        try:
            check_content_type(http_request)
            body = await read_capped_body(http_request, MAX_REVIEW_BYTES)
            return dict(parse_review(body))
        except ClientDisconnect:
            # The client went away, or serving.limits closed a request that was too slow.
            self.metrics.bad_requests.labels(webhook, "408").inc()
            return error_response(408, "the request was not received in time")
        except ReviewError as exc:
            self.metrics.bad_requests.labels(webhook, str(exc.status_code)).inc()
            fields = {"webhook": webhook, "status": exc.status_code, "error": exc.message}
            log.warning("rejected webhook request", extra={"fields": fields})
            return error_response(exc.status_code, exc.message)
        except Exception as exc:  # a parser bug must not become a 500 with a traceback
            self.metrics.bad_requests.labels(webhook, "400").inc()
            log.exception("could not read webhook request", extra={"fields": {"webhook": webhook}})
            return error_response(400, f"could not read the AdmissionReview ({type(exc).__name__})")

    async def decide(self, webhook: str, decide_fn: Decide, request: dict[str, Any]) -> Decision:
        """The decision; an unexpected failure is a denial (fail closed), logged with its cause."""
        try:
            namespace, namespace_error = await self.look_up_namespace(request)
            return decide_fn(request, namespace, self.config, namespace_error=namespace_error)
        except Exception:
            fields = {"webhook": webhook, "uid": request["uid"]}
            log.exception("admission failed unexpectedly; denying", extra={"fields": fields})
            return Decision(
                allowed=False, code=500, message=INTERNAL_ERROR_MESSAGE, reason="internal-error"
            )

    async def admit(self, webhook: str, decide_fn: Decide, http_request: Request) -> Response:
        started = self.clock()
        request = await self.read(webhook, http_request)
        if isinstance(request, Response):
            return request
        decision = await self.decide(webhook, decide_fn, request)
        elapsed = self.clock() - started
        operation = str(request.get("operation", ""))
        self.metrics.record_admission(
            webhook, operation, decision.allowed, decision.reason, elapsed
        )
        fields = {
            "webhook": webhook,
            "uid": request["uid"],
            "operation": operation,
            "namespace": request.get("namespace", ""),
            "name": request.get("name", ""),
            "allowed": decision.allowed,
            "reason": decision.reason,
            "detail": decision.message,
            "warnings": list(decision.warnings),
            "duration_ms": round(elapsed * 1000, 3),
        }
        log.info("admission", extra={"fields": fields})
        return Response(
            json.dumps(build_review(request["uid"], decision), separators=(",", ":")).encode(),
            media_type=JSON_MEDIA_TYPE,
        )


def create_app(
    config: Settings,
    namespaces: NamespaceSource,
    metrics: WebhookMetrics,
    *,
    clock: Callable[[], float] = time.perf_counter,
    drain: Drain | None = None,
) -> FastAPI:
    """The webhook's routes wired to an Admission."""
    app = FastAPI(title="sidecred webhook", docs_url=None, redoc_url=None, openapi_url=None)
    admission = Admission(config, namespaces, metrics, clock)

    # Plain Starlette routes: the handlers read the raw body and return bytes, so
    # FastAPI's parameter analysis and response validation would be pure overhead.
    async def mutate(http_request: Request) -> Response:
        return await admission.admit("mutate", decide_mutation, http_request)

    validate_or_review_namespace = with_namespace_review(decide_validation)

    async def validate(http_request: Request) -> Response:
        return await admission.admit("validate", validate_or_review_namespace, http_request)

    app.add_route("/mutate", mutate, methods=["POST"])
    app.add_route("/validate", validate, methods=["POST"])

    def not_synced() -> str | None:
        if namespaces.synced:
            return None
        cause = namespaces.last_error or "waiting for the first namespace list"
        return f"namespace cache has not synced: {cause}"

    add_health_probes(app, drain, not_synced)

    add_metrics_and_last_resort(
        app, metrics, log, lambda: error_response(500, "internal error; see the webhook's log")
    )

    return app
