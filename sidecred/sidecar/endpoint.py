"""Request handling for the two listeners: credentials (loopback) and health (kubelet).

Handlers are plain functions of a parsed request and the cache's state; the
HTTP server does the I/O. The credentials hot path is a path check, a
constant-time token compare and a lookup of pre-serialised bytes.
"""

from __future__ import annotations

import hmac
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sidecred.sidecar.cache import CredentialCache
from sidecred.sidecar.config import CREDENTIALS_PATH
from sidecred.sidecar.server import Request, Response
from sidecred.sidecar.wire import error_body, format_expiration


def utc_now() -> datetime:
    return datetime.now(UTC)


def _json_error(status: int, code: str, message: str) -> Response:
    return Response(status, error_body(code, message))


def _path(target: str) -> str:
    return target.split("?", 1)[0]


def token_matches(presented: str | None, expected: bytes) -> bool:
    """Constant-time comparison of the Authorization header with the auth token."""
    if presented is None:
        return False
    try:
        candidate = presented.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return hmac.compare_digest(candidate, expected)


class CredentialEndpoint:
    """`GET /v1/credentials` on 127.0.0.1, guarded by the auth token."""

    def __init__(
        self,
        cache: CredentialCache,
        token: str,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.cache = cache
        self.token = token.encode("latin-1")
        self.clock = clock
        self.responses: Counter[int] = Counter()  # status -> count, for /metrics

    def __call__(self, request: Request) -> Response:
        response = self.respond(request)
        self.responses[response.status] += 1
        return response

    def respond(self, request: Request) -> Response:
        if _path(request.target) != CREDENTIALS_PATH:
            return _json_error(
                404, "NotFound", f"no such path; credentials are at {CREDENTIALS_PATH}"
            )
        if request.method != "GET":
            return Response(
                405,
                error_body("MethodNotAllowed", f"{request.method} is not allowed; use GET"),
                headers=(("Allow", "GET"),),
            )
        presented = request.headers.get("authorization")
        if presented is None:
            return _json_error(401, "Unauthorized", "the Authorization header is missing")
        if not token_matches(presented, self.token):
            return _json_error(403, "Forbidden", "the Authorization header does not match")
        status, body = self.cache.lookup(self.clock())
        return Response(status, body)


@dataclass
class HealthEndpoint:
    """`/healthz`, `/readyz` and `/metrics` for the kubelet and operators. No secrets."""

    cache: CredentialCache
    credentials: CredentialEndpoint
    clock: Callable[[], datetime] = utc_now

    def __call__(self, request: Request) -> Response:
        path = _path(request.target)
        if path not in ("/healthz", "/readyz", "/metrics"):
            return _json_error(404, "NotFound", "no such path; try /healthz, /readyz or /metrics")
        if request.method not in ("GET", "HEAD"):
            return Response(
                405,
                error_body("MethodNotAllowed", f"{request.method} is not allowed; use GET"),
                headers=(("Allow", "GET, HEAD"),),
            )
        if path == "/healthz":
            return Response(200, b"ok\n", "text/plain; charset=utf-8")
        if path == "/metrics":
            return Response(200, self.metrics().encode(), "text/plain; version=0.0.4")
        return self.readyz()

    def readyz(self) -> Response:
        now = self.clock()
        held = self.cache.held
        valid_until = f"valid until {format_expiration(held.expiration)}" if held else ""
        if self.cache.ready(now):
            text = f"ready: credentials for {self.cache.role_arn} {valid_until}\n"
            return Response(200, text.encode(), "text/plain; charset=utf-8")
        code, message = self.cache.unavailable_reason(now)
        text = f"not ready: {code}: {message}"
        if self.cache.refused() and self.cache.lookup(now)[0] == 200:
            text += f" (still serving the credentials held, {valid_until})"
        return Response(503, (text + "\n").encode(), "text/plain; charset=utf-8")

    def metrics(self) -> str:
        """Counters in the Prometheus text format, written by hand to keep the sidecar lean."""
        lines = [
            "# HELP sidecred_credential_requests_total Responses on the credential endpoint, by status.",
            "# TYPE sidecred_credential_requests_total counter",
        ]
        for status in sorted(self.credentials.responses):
            count = self.credentials.responses[status]
            lines.append(f'sidecred_credential_requests_total{{code="{status}"}} {count}')
        held = self.cache.held
        lines += [
            "# HELP sidecred_sts_calls_total STS calls made.",
            "# TYPE sidecred_sts_calls_total counter",
            f"sidecred_sts_calls_total {self.cache.sts_calls}",
            "# HELP sidecred_sts_failures_total STS calls that failed.",
            "# TYPE sidecred_sts_failures_total counter",
            f"sidecred_sts_failures_total {self.cache.sts_failures}",
            "# HELP sidecred_credentials_expiry_timestamp_seconds Expiry of the served credentials.",
            "# TYPE sidecred_credentials_expiry_timestamp_seconds gauge",
            f"sidecred_credentials_expiry_timestamp_seconds {held.expiration.timestamp() if held else 0:.0f}",
            "# HELP sidecred_ready Whether valid credentials are held.",
            "# TYPE sidecred_ready gauge",
            f"sidecred_ready {1 if self.cache.ready(self.clock()) else 0}",
        ]
        return "\n".join(lines) + "\n"
