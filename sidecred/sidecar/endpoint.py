"""Request handling for the two listeners: credentials (loopback) and health (kubelet).

Handlers are plain functions of a parsed request and the caches' state; the
HTTP server does the I/O. The credentials hot path is a dict lookup of the
path, a constant-time token compare and a lookup of pre-serialised bytes.

A pod's sidecar may serve several roles: the pod's own at `/v1/credentials`
and a container's own at `/v1/containers/<container>/credentials`. Each path
answers only to its own auth token: another role's token is refused like any
wrong one, so one container's token never opens another's credentials.
"""

from __future__ import annotations

from _operator import _compare_digest as compare_digest
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from sidecred.sidecar.cache import CredentialCache
from sidecred.sidecar.config import CREDENTIALS_PATH, container_credentials_path
from sidecred.sidecar.server import Request, Response
from sidecred.sidecar.wire import error_body, format_expiration

# The `role` label of the metrics: bounded, never a container name or an ARN.
POD_ROLE = "pod"
CONTAINER_ROLE = "container"


def utc_now() -> datetime:
    return datetime.now(UTC)


def _json_error(status: int, code: str, message: str) -> Response:
    return Response(status, error_body(code, message))


def _path(target: str) -> str:
    return target.split("?", 1)[0]


def token_matches(presented: str | None, expected: bytes) -> bool:
    """Constant-time comparison of the Authorization header with the auth token.

    `compare_digest` is the constant-time compare `hmac.compare_digest` falls back
    to; importing `hmac` would load OpenSSL (about 4 MB in every pod) for it.
    """
    if presented is None:
        return False
    try:
        candidate = presented.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return compare_digest(candidate, expected)


class ServedRole:
    """One role the sidecar serves: where, to which token, from which cache."""

    __slots__ = ("cache", "container", "kind", "path", "token")

    def __init__(self, cache: CredentialCache, token: str, container: str | None = None) -> None:
        self.cache = cache
        self.token = token.encode("latin-1")
        self.container = container
        self.kind = POD_ROLE if container is None else CONTAINER_ROLE
        self.path = CREDENTIALS_PATH if container is None else container_credentials_path(container)

    def describe(self) -> str:
        """How /readyz names this role."""
        if self.container is None:
            return f"pod role {self.cache.role_arn}"
        return f"container {self.container} role {self.cache.role_arn}"


class CredentialEndpoint:
    """`GET /v1/credentials` (the pod's role) and `GET /v1/containers/<c>/credentials`."""

    def __init__(
        self,
        cache: CredentialCache | None,
        token: str | None,
        clock: Callable[[], datetime] = utc_now,
        containers: Mapping[str, tuple[CredentialCache, str]] | None = None,
    ) -> None:
        """`cache`/`token`: the pod's role (None when the pod has none); `containers`:
        container name -> (cache, token) for the containers with a role of their own."""
        roles = []
        if cache is not None:
            roles.append(ServedRole(cache, token or ""))
        for container, (container_cache, container_token) in (containers or {}).items():
            roles.append(ServedRole(container_cache, container_token, container))
        self.roles = tuple(roles)
        self.routes = {role.path: role for role in roles}
        self.clock = clock
        # (role label, status) -> count, for /metrics
        self.responses: Counter[tuple[str, int]] = Counter()

    def __call__(self, request: Request) -> Response:
        role, response = self.respond(request)
        self.responses[role, response.status] += 1
        return response

    def respond(self, request: Request) -> tuple[str, Response]:
        """(the role label the request was for, the answer)."""
        path = _path(request.target)
        role = self.routes.get(path)
        if role is None:
            return self._no_such_role(path)
        if request.method != "GET":
            return role.kind, Response(
                405,
                error_body("MethodNotAllowed", f"{request.method} is not allowed; use GET"),
                headers=(("Allow", "GET"),),
            )
        presented = request.headers.get("authorization")
        if presented is None:
            return role.kind, _json_error(
                401, "Unauthorized", "the Authorization header is missing"
            )
        if not token_matches(presented, role.token):
            return role.kind, _json_error(
                403, "Forbidden", "the Authorization header does not match"
            )
        status, body = role.cache.lookup(self.clock())
        return role.kind, Response(status, body)

    def _no_such_role(self, path: str) -> tuple[str, Response]:
        if path == CREDENTIALS_PATH:
            return POD_ROLE, _json_error(
                404,
                "NoPodRole",
                "this pod has no pod-level role; containers with a role of their own "
                "get it at /v1/containers/<container>/credentials",
            )
        where = (
            CREDENTIALS_PATH
            if CREDENTIALS_PATH in self.routes
            else "/v1/containers/<container>/credentials"
        )
        label = CONTAINER_ROLE if path.startswith("/v1/containers/") else POD_ROLE
        return label, _json_error(404, "NotFound", f"no such path; credentials are at {where}")


class HealthEndpoint:
    """`/healthz`, `/readyz` and `/metrics` for the kubelet and operators. No secrets."""

    def __init__(
        self, credentials: CredentialEndpoint, clock: Callable[[], datetime] = utc_now
    ) -> None:
        self.credentials = credentials
        self.clock = clock

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
        """200 once every role holds credentials; else 503 naming each role that does not, and why.

        One line either way: `ready: credentials for <arn>[,<container>=<arn>...] valid until
        <earliest expiry>` or `not ready: <code>: <message>` (the first role not ready gives
        the code; with several roles the message names each one that is not ready).
        """
        now = self.clock()
        roles = self.credentials.roles
        waiting = [role for role in roles if not role.cache.ready(now)]
        if not waiting:
            names = ",".join(
                role.cache.role_arn
                if role.container is None
                else f"{role.container}={role.cache.role_arn}"
                for role in roles
            )
            until = min(role.cache.held.expiration for role in roles if role.cache.held)
            text = f"ready: credentials for {names} valid until {format_expiration(until)}\n"
            return Response(200, text.encode(), "text/plain; charset=utf-8")
        first_code = waiting[0].cache.unavailable_reason(now)[0]
        reasons = [self._not_ready(role, now, named=len(roles) > 1) for role in waiting]
        text = f"not ready: {first_code}: " + "; ".join(reasons)
        return Response(503, (text + "\n").encode(), "text/plain; charset=utf-8")

    @staticmethod
    def _not_ready(role: ServedRole, now: datetime, *, named: bool) -> str:
        cache = role.cache
        code, message = cache.unavailable_reason(now)
        held = cache.held
        if cache.refused() and held is not None and cache.lookup(now)[0] == 200:
            message += (
                " (still serving the credentials held, "
                f"valid until {format_expiration(held.expiration)})"
            )
        return f"{role.describe()}: {code}: {message}" if named else message

    def metrics(self) -> str:
        """Counters in the Prometheus text format, written by hand to keep the sidecar lean.

        Each series carries a `role` label: `pod` for the pod's role, `container` for the
        containers' own roles taken together (bounded; never a container name or an ARN).
        """
        now = self.clock()
        lines = [
            "# HELP sidecred_credential_requests_total Responses on the credential endpoint, by role and status.",
            "# TYPE sidecred_credential_requests_total counter",
        ]
        for kind, status in sorted(self.credentials.responses):
            count = self.credentials.responses[kind, status]
            lines.append(
                f'sidecred_credential_requests_total{{role="{kind}",code="{status}"}} {count}'
            )
        kinds: dict[str, list[CredentialCache]] = {}
        for role in self.credentials.roles:
            kinds.setdefault(role.kind, []).append(role.cache)
        series: dict[str, list[str]] = {name: [] for name, _, _ in _ROLE_METRICS}
        for kind, caches in kinds.items():
            label = f'{{role="{kind}"}}'
            expiries = [c.held.expiration.timestamp() for c in caches if c.held]
            values = {
                "sidecred_sts_calls_total": sum(c.fetches for c in caches),
                "sidecred_sts_failures_total": sum(c.fetch_failures for c in caches),
                "sidecred_credentials_expiry_timestamp_seconds": f"{min(expiries) if len(expiries) == len(caches) else 0:.0f}",
                "sidecred_ready": 1 if all(c.ready(now) for c in caches) else 0,
            }
            for name, value in values.items():
                series[name].append(f"{name}{label} {value}")
        for name, kind, help_ in _ROLE_METRICS:
            lines += [f"# HELP {name} {help_}", f"# TYPE {name} {kind}", *series[name]]
        return "\n".join(lines) + "\n"


_ROLE_METRICS = (
    (
        "sidecred_sts_calls_total",
        "counter",
        "Credential fetches from the source (STS or the broker).",
    ),
    ("sidecred_sts_failures_total", "counter", "Credential fetches that failed."),
    (
        "sidecred_credentials_expiry_timestamp_seconds",
        "gauge",
        "Earliest expiry of the served credentials (0 while a role has none).",
    ),
    ("sidecred_ready", "gauge", "Whether valid credentials are held for every role."),
)
