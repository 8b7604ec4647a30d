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
from dataclasses import dataclass
from typing import Any, Protocol

from sidecred.broker.authorise import Caller, Grant, SidecarProblem, authorise
from sidecred.broker.identity import Identifier
from sidecred.broker.metrics import BrokerMetrics
from sidecred.broker.sts import RoleAssumer
from sidecred.kube.watch import NamespaceSource
from sidecred.pods.refusal import Refusal
from sidecred.pods.settings import Settings
from sidecred.sidecar.credentials import SourceError
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


class Issuer:
    def __init__(
        self,
        config: Settings,
        identifier: Identifier,
        namespaces: NamespaceSource,
        assumer: RoleAssumer,
        sidecar_problem: SidecarProblem,
        metrics: BrokerMetrics,
        *,
        events: EventSink | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self._identifier = identifier
        self._namespaces = namespaces
        self._assumer = assumer
        self._sidecar_problem = sidecar_problem
        self._metrics = metrics
        self._events = events
        self._clock = clock
        self._lock = threading.Lock()
        self._held: dict[Grant, Generation] = {}
        self._grants_by_uid: dict[str, set[Grant]] = {}  # so forgetting a pod costs its own
        self._inflight: dict[Grant, concurrent.futures.Future[bytes]] = {}
        self._next_sweep = clock() + SWEEP_INTERVAL_SECONDS

    def issue(self, authorization: str | None, container: str = "") -> Answer:
        """The answer to one `POST /v1/credentials` (no body is read: the role is the pod's)."""
        identified = self._identifier.identify(authorization)
        if isinstance(identified, Refusal):
            return refused(identified)
        caller, pod = identified.caller, identified.pod
        namespace = self._namespaces.get(caller.namespace)
        grant = authorise(caller, pod, namespace, self.config, self._sidecar_problem, container)
        if isinstance(grant, Refusal):
            if self._events is not None:
                self._events.refused(caller, pod.object, grant, container)
            return refused(grant, caller, container)
        try:
            body = self.credentials(grant)
        except SourceError as exc:
            refusal = Refusal(exc.code, f"sts:AssumeRole failed: {exc.message}", 503)
            return refused(refusal, caller, container)
        except TimeoutError:
            message = "sidecred broker: another request's sts:AssumeRole call did not finish"
            return refused(Refusal("StsTimeout", message, 503), caller, container)
        if self._events is not None:
            self._events.issued(caller, pod.object, container)
        return Answer(200, body, "issued", caller, container=container)

    def credentials(self, grant: Grant) -> bytes:
        """The grant's current generation, or a new one from STS (one call per grant at a time)."""
        now = self._clock()
        with self._lock:
            held = self._held.get(grant)
            if held is not None and now < held.reuse_until:
                self._metrics.credential_cache.labels("hit").inc()
                return held.body
            future = self._inflight.get(grant)
            leader = future is None
            if future is None:
                future = self._inflight[grant] = concurrent.futures.Future()
        if not leader:
            self._metrics.credential_cache.labels("hit").inc()
            return future.result(timeout=FOLLOWER_WAIT_SECONDS)
        self._metrics.credential_cache.labels("miss").inc()
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
        issued_at = self._clock()
        try:
            creds = self._assumer.assume(grant)
        except SourceError as exc:
            self._metrics.sts_calls.labels(exc.code).inc()
            raise
        self._metrics.sts_calls.labels("ok").inc()
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
        self._identifier.reviewer.forget(uid)


def refused(refusal: Refusal, caller: Caller | None = None, container: str = "") -> Answer:
    body = refusal.error_body()
    return Answer(refusal.status, body, refusal.reason, caller, refusal.message, container)
