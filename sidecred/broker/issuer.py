"""One issuance, from the Authorization header to the response body.

Identify the caller (the token verified locally, its pod from the watch cache;
broker.identity), read its namespace (watch cache), authorise as things are
now, then hand out the pod's current credential generation or fetch a new one.
Authorisation runs on every request, even when the credentials are cached, so a
role taken out of a namespace's policy stops the next refresh.

Single flight: however many requests for one grant arrive together, one of
them calls STS and the others wait for its answer.

`forget(uid)`, called when the pod watch reports a pod gone (or out of its
selector), drops everything held for that pod at once: its credentials, its
STS call in flight (whose answer is then not kept) and its token reviews.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from sidecred.broker.authorise import Caller, Grant, SidecarProblem, authorise
from sidecred.broker.identity import Identifier
from sidecred.broker.metrics import BrokerMetrics
from sidecred.kube.watch import NamespaceSource
from sidecred.pods.refusal import Refusal
from sidecred.pods.settings import Settings
from sidecred.sidecar.credentials import Credentials, SourceError
from sidecred.sidecar.wire import credentials_body

# A generation is handed out again only during the first quarter of its life.
# A sidecar refreshes at about half its session, so each of its refreshes gets a
# new generation (never one that is already half spent), while requests that
# arrive together, retries and sidecar restarts share one STS call.
REUSE_FRACTION = 0.25
# Expired generations are swept at most this often.
SWEEP_INTERVAL_SECONDS = 60.0
# How long a request waits for another request's STS call for the same grant.
FOLLOWER_WAIT_SECONDS = 30.0


class Assumer(Protocol):
    """Where the issuer gets a grant's credentials: `sts:AssumeRole` (broker.sts.RoleAssumer)
    in the broker; raises SourceError when STS refuses or fails."""

    def assume(self, grant: Grant) -> Credentials: ...


class EventSink(Protocol):
    """Where the issuer reports refusals and issuances for pod events (broker.pod_events)."""

    def refused(
        self, caller: Caller, pod: Mapping[str, Any] | None, refusal: Refusal, container: str = ""
    ) -> None: ...

    def issued(
        self, caller: Caller, pod: Mapping[str, Any] | None, container: str = ""
    ) -> None: ...


@dataclass(frozen=True)
class Generation:
    """One STS answer for a grant, serialised once."""

    body: bytes
    reuse_until: float
    expires_at: float


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    result: str  # "issued" or the refusal's reason, for metrics and logs
    caller: Caller | None = None
    detail: str = ""  # the refusal's message, for the log
    container: str = ""  # the container whose own role was asked for; "" for the pod's


@dataclass(eq=False)
class Issuer:
    """Answers `POST /v1/credentials` (see the module's docstring); holds one generation per
    grant."""

    config: Settings
    identifier: Identifier
    namespaces: NamespaceSource
    assumer: Assumer
    sidecar_problem: SidecarProblem
    metrics: BrokerMetrics
    events: EventSink | None = field(default=None, kw_only=True)
    clock: Callable[[], float] = field(default=time.time, kw_only=True)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _held: dict[Grant, Generation] = field(default_factory=dict, init=False, repr=False)
    # so forgetting a pod costs its own grants, not a walk over every grant
    _grants_by_uid: dict[str, set[Grant]] = field(default_factory=dict, init=False, repr=False)
    _inflight: dict[Grant, concurrent.futures.Future[bytes]] = field(
        default_factory=dict, init=False, repr=False
    )
    _next_sweep: float = field(default=0.0, init=False, repr=False)

    def __post_init__(self) -> None:
        self._next_sweep = self.clock() + SWEEP_INTERVAL_SECONDS

    def issue(self, authorization: str | None, container: str = "") -> Answer:
        """The answer to one `POST /v1/credentials` (no body is read: the role is the pod's)."""
        identified = self.identifier.identify(authorization)
        if isinstance(identified, Refusal):
            return refused(identified)
        caller, pod = identified.caller, identified.pod
        namespace = self.namespaces.get(caller.namespace)
        grant = authorise(caller, pod, namespace, self.config, self.sidecar_problem, container)
        if isinstance(grant, Refusal):
            if self.events is not None:
                self.events.refused(caller, pod.object, grant, container)
            return refused(grant, caller, container)
        try:
            body = self.credentials(grant)
        except SourceError as exc:
            refusal = Refusal(exc.code, f"sts:AssumeRole failed: {exc.message}", 503)
            return refused(refusal, caller, container)
        except TimeoutError:
            message = "sidecred broker: another request's sts:AssumeRole call did not finish"
            return refused(Refusal("StsTimeout", message, 503), caller, container)
        if self.events is not None:
            self.events.issued(caller, pod.object, container)
        return Answer(200, body, "issued", caller, container=container)

    def credentials(self, grant: Grant) -> bytes:
        """The grant's current generation, or a new one from STS (one call per grant at a time)."""
        now = self.clock()
        with self._lock:
            held = self._held.get(grant)
            if held is not None and now < held.reuse_until:
                self.metrics.credential_cache.labels("hit").inc()
                return held.body
            future = self._inflight.get(grant)
            leader = future is None
            if future is None:
                future = self._inflight[grant] = concurrent.futures.Future()
        if not leader:
            self.metrics.credential_cache.labels("hit").inc()
            return future.result(timeout=FOLLOWER_WAIT_SECONDS)
        self.metrics.credential_cache.labels("miss").inc()
        try:
            body = self._fetch(grant, future)
        except SourceError as exc:
            future.set_exception(exc)
            raise
        finally:
            with self._lock:
                if self._inflight.get(grant) is future:
                    del self._inflight[grant]
        future.set_result(body)
        return body

    def _fetch(self, grant: Grant, flight: concurrent.futures.Future[bytes]) -> bytes:
        issued_at = self.clock()
        try:
            creds = self.assumer.assume(grant)
        except SourceError as exc:
            self.metrics.sts_calls.labels(exc.code).inc()
            raise
        self.metrics.sts_calls.labels("ok").inc()
        expires_at = creds.expiration.timestamp()
        generation = Generation(
            credentials_body(creds),
            issued_at + (expires_at - issued_at) * REUSE_FRACTION,
            expires_at,
        )
        with self._lock:
            if self._inflight.get(grant) is flight:  # the pod was not forgotten meanwhile
                self._held[grant] = generation
                self._grants_by_uid.setdefault(grant.pod_uid, set()).add(grant)
            if issued_at >= self._next_sweep:
                self._next_sweep = issued_at + SWEEP_INTERVAL_SECONDS
                for key in [k for k, g in self._held.items() if g.expires_at <= issued_at]:
                    del self._held[key]
                    grants = self._grants_by_uid.get(key.pod_uid, set())
                    grants.discard(key)
                    if not grants:
                        self._grants_by_uid.pop(key.pod_uid, None)
        return generation.body

    def forget(self, uid: str) -> None:
        """Drop everything held for pod `uid`: credentials, STS call in flight, token reviews."""
        with self._lock:
            for grant in self._grants_by_uid.pop(uid, set()):
                self._held.pop(grant, None)
            for grant in [g for g in self._inflight if g.pod_uid == uid]:
                del self._inflight[grant]
        self.identifier.reviewer.forget(uid)


def refused(refusal: Refusal, caller: Caller | None = None, container: str = "") -> Answer:
    body = refusal.error_body()
    return Answer(refusal.status, body, refusal.reason, caller, refusal.message, container)
