"""Pod events for the broker's refusals.

The injected sidecar has no readinessProbe, so a refusal after start-up (a role
taken out of the namespace's policy) shows on the pod only once its credentials
run out. The broker knows at once: when it refuses a pod that exists (403 with
the pod's own uid; never a 401, which names no trustworthy pod) it posts the
webhook's `CredentialsUnavailable` Warning with the refusal's code and message,
and a `CredentialsAvailable` Normal event when that pod is next issued
credentials. The decision is the webhook reporter's `event_due`, so the rate is
the same: at most one per pod per RATE_LIMIT_SECONDS, but per broker replica,
since each replica answers the requests it gets and none is elected.

Deciding is an in-memory look-up; posting runs on one background thread, so an
issuance never waits on the API server and a failed post is only logged and
counted (sidecred_pod_event_errors).
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client

from sidecred.broker.authorise import Caller
from sidecred.kube.events import (
    RATE_LIMIT_SECONDS,
    EventMetrics,
    PodEvent,
    awaits_recovery,
    build_event,
    event_due,
    post_event,
)
from sidecred.kube.sidecar_health import SidecarHealth
from sidecred.pods.refusal import Refusal

REPORTER = "broker"
ACTION = "IssueCredentials"
MAX_TRACKED_PODS = 10_000  # pods remembered for the rate limit; the oldest go first
SWEEP_INTERVAL_SECONDS = 60.0


def tracking_key(uid: str, container: str) -> str:
    """What the rate limit is kept per: the pod's uid, or `<uid>/<container>` for its own role."""
    return f"{uid}/{container}" if container else uid


def own_pod(caller: Caller, pod: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """The pod if it is the caller's own (same uid): only then does an event belong on it."""
    if pod is None or str((pod.get("metadata") or {}).get("uid") or "") != caller.pod_uid:
        return None
    return pod


@dataclass
class RefusalEvents:
    """Decides, per pod uid, which refusal or recovery gets an Event, and posts it off-thread."""

    api: client.CoreV1Api
    metrics: EventMetrics
    instance: str
    clock: Callable[[], float] = time.time
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    _last: dict[str, dict[str, PodEvent]] = field(default_factory=dict, init=False)  # uid -> reason
    _next_sweep: float = field(default=0.0, init=False)
    _poster: concurrent.futures.ThreadPoolExecutor = field(
        default_factory=lambda: concurrent.futures.ThreadPoolExecutor(1, "pod-events"), init=False
    )

    def __post_init__(self) -> None:
        self._next_sweep = self.clock() + SWEEP_INTERVAL_SECONDS

    def refused(
        self, caller: Caller, pod: Mapping[str, Any] | None, refusal: Refusal, container: str = ""
    ) -> None:
        """A refusal: a Warning on the caller's pod if it is a 403 and none was posted lately.

        A container's own role is tracked apart from the pod's, so one role's issuance
        never reads as another's recovery.
        """
        pod = own_pod(caller, pod)
        if refusal.status == 403 and pod is not None:
            health = SidecarHealth(
                False, code=refusal.reason, message=refusal.message, container=container
            )
            self._consider(pod, health, tracking_key(caller.pod_uid, container))

    def issued(self, caller: Caller, pod: Mapping[str, Any] | None, container: str = "") -> None:
        """An issuance: a Normal event if this role's last event was a refusal."""
        pod = own_pod(caller, pod)
        key = tracking_key(caller.pod_uid, container)
        if pod is not None and key in self._last:  # a racy read, settled under the lock
            self._consider(pod, SidecarHealth(True, container=container), key)

    def _consider(self, pod: Mapping[str, Any], health: SidecarHealth, uid: str) -> None:
        with self._lock:
            known = self._last.get(uid, {})
            if health.ready and not awaits_recovery(known):
                return
            event = event_due(pod, health, known, self.clock())
            if event is None:
                return
            self._last.setdefault(uid, {})[event.reason] = event  # reserved; undone if refused
            self._sweep(event.at)
        body = build_event(pod, event, self.instance, reporter=REPORTER, action=ACTION)
        self._poster.submit(self._post, pod, uid, event, body)

    def _post(
        self, pod: Mapping[str, Any], uid: str, event: PodEvent, body: dict[str, Any]
    ) -> None:
        if post_event(self.api, pod, body, self.metrics):
            return
        with self._lock:
            known = self._last.get(uid, {})
            if known.get(event.reason) is event:
                del known[event.reason]  # the next refusal or issuance tries again

    def _sweep(self, now: float) -> None:
        """Forget pods with nothing pending in the window; cap how many are remembered."""
        if now >= self._next_sweep:
            self._next_sweep = now + SWEEP_INTERVAL_SECONDS
            for uid, known in list(self._last.items()):
                latest = max((e.at for e in known.values()), default=0.0)
                if not awaits_recovery(known) and now - latest >= RATE_LIMIT_SECONDS:
                    del self._last[uid]
        while len(self._last) > MAX_TRACKED_PODS:
            del self._last[next(iter(self._last))]  # dicts keep insertion order: the oldest

    def stop(self) -> None:
        """Post what is queued, then stop the posting thread."""
        self._poster.shutdown(wait=True)
