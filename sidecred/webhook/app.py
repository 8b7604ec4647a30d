"""The webhook's HTTP app: parse, look the namespace up, call the pure core, serialise.

Two error channels: a request that is not a usable AdmissionReview gets a 4xx
JSON error (the API server then applies the webhook's failurePolicy); an
unexpected failure while deciding a well-formed review gets an AdmissionReview
denial for its uid (fail closed). Neither ever carries a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from sidecred.kube.watch import CACHE, NamespaceSource
from sidecred.pods.settings import Settings
from sidecred.serving.body_budget import (
    DEFAULT_BUDGET_MIB,
    BodyBudget,
    BodyEvicted,
    BudgetExhausted,
    read_within,
)
from sidecred.serving.drain import Drain
from sidecred.serving.http import add_health_probes, add_metrics_and_last_resort
from sidecred.webhook.decide import (
    Decision,
    decide_mutation,
    decide_validation,
    namespace_to_lookup,
)
from sidecred.webhook.metrics import WebhookMetrics
from sidecred.webhook.namespace_review import is_namespace_request, with_namespace_review
from sidecred.webhook.review import (
    MAX_REVIEW_BYTES,
    AdmissionRequest,
    ReviewError,
    build_review,
    parse_review,
)

log = logging.getLogger("sidecred.webhook")

JSON_MEDIA_TYPE = "application/json"
# Reviews larger than this are parsed and decided off the event loop (Admission).
# An ordinary pod's review is a few KiB; a large real one tens of KiB.
INLINE_REVIEW_BYTES = 64 * 1024
# Answers that may leave part of the body unread: the connection cannot be reused.
CLOSING_STATUSES = frozenset({408, 411, 413, 415, 503})
INTERNAL_ERROR_MESSAGE = (
    "sidecred: internal error while deciding this request; it is refused (fail closed). "
    "See the webhook's log for details."
)


Decide = Callable[..., Decision]


def declared_length(request: Request, limit: int) -> int:
    """The body's Content-Length, before any of it is read: 411 without one (the API
    server always sends it), 413 over `limit`."""
    if "transfer-encoding" in request.headers:
        raise ReviewError(411, "send the AdmissionReview with a Content-Length, not chunked")
    declared = request.headers.get("content-length")
    if declared is None:
        raise ReviewError(411, "an AdmissionReview needs a Content-Length")
    if not (declared.isascii() and declared.isdigit() and len(declared) <= 20):
        raise ReviewError(400, f"Content-Length {declared[:20]!r} is not a number")
    if int(declared) > limit:
        raise ReviewError(413, f"AdmissionReview is {declared} bytes; the limit is {limit}")
    return int(declared)


def read_review(webhook: str, body: bytes) -> AdmissionRequest:
    """parse_review, with a parser bug turned into a 400 (logged), never a 500."""
    try:
        return parse_review(body)
    except ReviewError:
        raise
    except Exception as exc:
        log.exception("could not read webhook request", extra={"fields": {"webhook": webhook}})
        raise ReviewError(
            400, f"could not read the AdmissionReview ({type(exc).__name__})"
        ) from None


def render(uid: str, decision: Decision) -> bytes:
    return json.dumps(build_review(uid, decision), separators=(",", ":")).encode()


def check_content_type(request: Request) -> None:
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != JSON_MEDIA_TYPE:
        raise ReviewError(
            415, f"expected Content-Type {JSON_MEDIA_TYPE}, got {media_type or 'none'!r}"
        )


def error_response(status_code: int, message: str) -> JSONResponse:
    """A 4xx/5xx JSON error. When the body may be partly unread, the connection is closed."""
    headers = {"Connection": "close"} if status_code in CLOSING_STATUSES else None
    if status_code == 503:
        headers = {**(headers or {}), "Retry-After": "1"}
    return JSONResponse({"error": message}, status_code=status_code, headers=headers)


@dataclass
class Admission:
    """One admission request at the HTTP edge: read it within the body budget, look its
    namespace up, decide, answer.

    A review over INLINE_REVIEW_BYTES is parsed, decided and serialised in one worker
    thread, one at a time: a huge pod costs that thread's time, not the event loop's,
    so ordinary reviews keep being answered meanwhile, and at most one huge review is
    held in parsed form. Namespace reviews, which compile the caller's patterns, are
    decided there too.
    """

    config: Settings
    namespaces: NamespaceSource
    metrics: WebhookMetrics
    clock: Callable[[], float] = time.perf_counter
    bodies: BodyBudget = field(default_factory=lambda: BodyBudget(DEFAULT_BUDGET_MIB * 1024 * 1024))

    def __post_init__(self) -> None:
        self._lane = ThreadPoolExecutor(max_workers=1, thread_name_prefix="large-review")
        self._large_slot = asyncio.Semaphore(1)

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

    def _refused(self, webhook: str, status: int, message: str) -> Response:
        self.metrics.bad_requests.labels(webhook, str(status)).inc()
        fields = {"webhook": webhook, "status": status, "error": message}
        log.warning("rejected webhook request", extra={"fields": fields})
        return error_response(status, message)

    async def admit(self, webhook: str, decide_fn: Decide, http_request: Request) -> Response:
        """Read the body within the budget, then answer; a request that is not a usable
        review gets a 4xx (or 503 when the budget has no room), never a traceback."""
        started = self.clock()
        try:
            check_content_type(http_request)
            size = declared_length(http_request, MAX_REVIEW_BYTES)
            async with self.bodies.hold(size) as hold:
                body = await read_within(hold, http_request.stream())
                return await self.answer(webhook, decide_fn, body, started)
        except ClientDisconnect:
            # The client went away, or serving.limits closed a request that was too slow.
            self.metrics.bad_requests.labels(webhook, "408").inc()
            return error_response(408, "the request was not received in time")
        except ReviewError as exc:
            return self._refused(webhook, exc.status_code, exc.message)
        except BudgetExhausted:
            return self._refused(webhook, 503, "the webhook is at its memory budget; retry")
        except BodyEvicted:
            message = "the request body arrived too slowly while others waited; retry"
            return self._refused(webhook, 503, message)

    async def _run(self, large: bool, function: Callable[..., Any], *args: Any) -> Any:
        if not large:
            return function(*args)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._lane, functools.partial(function, *args))

    async def answer(
        self, webhook: str, decide_fn: Decide, body: bytes, started: float
    ) -> Response:
        large = len(body) > INLINE_REVIEW_BYTES
        async with self._large_slot if large else contextlib.nullcontext():
            request = dict(await self._run(large, read_review, webhook, body))
            # A Namespace review compiles the caller's regular expressions (up to 16 KiB,
            # tens of ms): decided in the same worker thread.
            compiles = not large and is_namespace_request(request)
            async with self._large_slot if compiles else contextlib.nullcontext():
                decision, payload = await self._decide_off_loop_if(
                    large or compiles, webhook, decide_fn, request
                )
        self.log_admission(webhook, request, decision, self.clock() - started)
        return Response(payload, media_type=JSON_MEDIA_TYPE)

    async def _decide_off_loop_if(
        self, off_loop: bool, webhook: str, decide_fn: Decide, request: dict[str, Any]
    ) -> tuple[Decision, bytes]:
        try:
            namespace, namespace_error = await self.look_up_namespace(request)
        except Exception:
            return self.failed(webhook, request)
        answered: tuple[Decision, bytes] = await self._run(
            off_loop, self.decide, webhook, decide_fn, request, namespace, namespace_error
        )
        return answered

    def decide(
        self,
        webhook: str,
        decide_fn: Decide,
        request: dict[str, Any],
        namespace: dict[str, Any] | None,
        namespace_error: str,
    ) -> tuple[Decision, bytes]:
        """The decision and the serialised review; an unexpected failure is a denial
        (fail closed), logged with its cause."""
        try:
            decision = decide_fn(request, namespace, self.config, namespace_error=namespace_error)
        except Exception:
            return self.failed(webhook, request)
        return decision, render(request["uid"], decision)

    def failed(self, webhook: str, request: dict[str, Any]) -> tuple[Decision, bytes]:
        """A denial for a bug met while answering (logged with its traceback, never sent)."""
        fields = {"webhook": webhook, "uid": request["uid"]}
        log.exception("admission failed unexpectedly; denying", extra={"fields": fields})
        decision = Decision(
            allowed=False, code=500, message=INTERNAL_ERROR_MESSAGE, reason="internal-error"
        )
        return decision, render(request["uid"], decision)

    def log_admission(
        self, webhook: str, request: dict[str, Any], decision: Decision, elapsed: float
    ) -> None:
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


def create_app(
    config: Settings,
    namespaces: NamespaceSource,
    metrics: WebhookMetrics,
    *,
    clock: Callable[[], float] = time.perf_counter,
    body_budget_bytes: int = DEFAULT_BUDGET_MIB * 1024 * 1024,
    drain: Drain | None = None,
) -> FastAPI:
    """The webhook's routes wired to an Admission; request bodies share `body_budget_bytes`."""
    app = FastAPI(title="sidecred webhook", docs_url=None, redoc_url=None, openapi_url=None)
    bodies = BodyBudget(body_budget_bytes)
    metrics.watch_request_bodies(lambda: bodies.held)
    admission = Admission(config, namespaces, metrics, clock, bodies)

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
