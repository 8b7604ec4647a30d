"""Pod events for sidecars without credentials (DESIGN.md 7), reported by the webhook process.

The kubelet does not copy an HTTP probe's body into its event, so `kubectl
describe pod` shows only "Startup probe failed ... 503". The reporter fills the
gap: one webhook replica at a time (webhook.leader) watches sidecred's pods by
label (webhook.kube.PodCache), reads a not-ready sidecar's /readyz through the
pod proxy (webhook.sidecar_health) and posts an Event on the pod:

- `CredentialsUnavailable` (Warning) naming the role and the cause, STS's or
  the broker's code and message; at most one per pod per RATE_LIMIT_SECONDS;
- `CredentialsAvailable` (Normal) once a pod that had one is ready again.

`event_due` is the pure decision. The last events of each pod are remembered by
pod uid and, when a replica starts leading, read back from the API (the Events
sidecred posted carry a label), so a new leader never repeats its predecessor.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from prometheus_client import CollectorRegistry, Counter, Gauge

from sidecred.webhook.annotations import EVENT_LABEL
from sidecred.webhook.kube import PodCache
from sidecred.webhook.leader import RETRY_PERIOD_SECONDS, LeaseElector, micro_time
from sidecred.webhook.names import SIDECAR_NAME
from sidecred.webhook.pod import find_sidecar
from sidecred.webhook.sidecar_health import (
    NOT_READY_STARTING,
    HealthUnavailable,
    SidecarHealth,
    pod_role,
    read_sidecar_health,
    sidecar_status,
)

log = logging.getLogger(__name__)

UNAVAILABLE, AVAILABLE = "CredentialsUnavailable", "CredentialsAvailable"
RATE_LIMIT_SECONDS = 300  # at most one CredentialsUnavailable per pod in this window
SCAN_INTERVAL_SECONDS = 10.0  # with the kubelet's probe period, an event within 30 s
COMPONENT = "sidecred"
MAX_MESSAGE_CHARS = 1024  # the API server's limit on an Event message


@dataclass(frozen=True)
class PodEvent:
    reason: str  # UNAVAILABLE | AVAILABLE
    message: str
    at: float  # seconds since the epoch

    @property
    def type(self) -> str:
        return "Warning" if self.reason == UNAVAILABLE else "Normal"


LastEvents = Mapping[str, PodEvent]  # reason -> the pod's latest event with that reason


def awaits_recovery(last: LastEvents) -> bool:
    """The pod's last event says its sidecar had no credentials."""
    unavailable, available = last.get(UNAVAILABLE), last.get(AVAILABLE)
    return unavailable is not None and (available is None or available.at < unavailable.at)


def needs_reading(pod: Mapping[str, Any], last: LastEvents) -> bool:
    """Whether the sidecar's /readyz is worth a proxy call: it runs and is not ready, or it
    had a CredentialsUnavailable event and may have recovered."""
    metadata = pod.get("metadata") or {}
    status = pod.get("status") or {}
    if metadata.get("deletionTimestamp") or status.get("phase") not in ("Pending", "Running"):
        return False
    if not status.get("podIP") or find_sidecar(pod) is None:
        return False
    sidecar = sidecar_status(pod)
    if "running" not in (sidecar.get("state") or {}):
        return False
    return not sidecar.get("ready") or awaits_recovery(last)


def event_due(
    pod: Mapping[str, Any], health: SidecarHealth, last: LastEvents, now: float
) -> PodEvent | None:
    """The event to post for this pod now, if any."""
    role = pod_role(pod) or "(unknown role)"
    unavailable = last.get(UNAVAILABLE)
    if health.ready:
        if awaits_recovery(last):
            until = f" (valid until {health.expires})" if health.expires else ""
            return PodEvent(AVAILABLE, f'sidecar holds credentials for role "{role}"{until}', now)
        return None
    if health.code == NOT_READY_STARTING:
        return None  # the first fetch is still running: nothing has failed yet
    if unavailable is not None and now - unavailable.at < RATE_LIMIT_SECONDS:
        return None
    message = f'sidecar cannot get credentials for role "{role}": {health.code}: {health.message}'
    return PodEvent(UNAVAILABLE, message[:MAX_MESSAGE_CHARS], now)


def build_event(
    pod: Mapping[str, Any],
    event: PodEvent,
    instance: str,
    *,
    reporter: str = "event-reporter",
    action: str = "ReadSidecarReadiness",
) -> dict[str, Any]:
    """The core/v1 Event object on the pod's sidecar container."""
    metadata = pod.get("metadata") or {}
    sidecar = find_sidecar(pod)
    list_name = sidecar[0] if sidecar else "containers"
    stamp = dt.datetime.fromtimestamp(int(event.at), dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    name = f"{str(metadata.get('name'))[:200]}.{uuid.uuid4().hex[:16]}"
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": name,
            "namespace": metadata.get("namespace"),
            "labels": {EVENT_LABEL: "true"},
        },
        "involvedObject": {
            "apiVersion": "v1",
            "kind": "Pod",
            "name": metadata.get("name"),
            "namespace": metadata.get("namespace"),
            "uid": metadata.get("uid"),
            "fieldPath": f"spec.{list_name}{{{SIDECAR_NAME}}}",
        },
        "reason": event.reason,
        "message": event.message,
        "type": event.type,
        "count": 1,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "eventTime": micro_time(event.at),
        "source": {"component": COMPONENT},
        "reportingComponent": f"{COMPONENT}.dev/{reporter}",
        "reportingInstance": instance[:128],
        "action": action,
    }


def event_from_object(obj: Mapping[str, Any]) -> tuple[str, PodEvent] | None:
    """(pod uid, event) for an Event sidecred posted, read back from the API."""
    uid = (obj.get("involvedObject") or {}).get("uid")
    reason = obj.get("reason")
    stamp = obj.get("lastTimestamp") or ""
    if not uid or reason not in (UNAVAILABLE, AVAILABLE):
        return None
    try:
        at = dt.datetime.fromisoformat(stamp).timestamp()
    except ValueError:
        return None
    return uid, PodEvent(reason, str(obj.get("message") or ""), at)


class EventMetrics:
    """Pod events posted and refused, in the registry of the process that posts them."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.events = Counter(
            "sidecred_pod_events", "Pod events posted, by reason.", ["reason"], registry=registry
        )
        self.event_errors = Counter(
            "sidecred_pod_event_errors", "Pod events the API server refused.", registry=registry
        )


def post_event(
    api: client.CoreV1Api, pod: Mapping[str, Any], body: dict[str, Any], metrics: EventMetrics
) -> bool:
    """Create the Event `body` on `pod`; False (logged, counted) if the API server refused it."""
    namespace = (pod.get("metadata") or {}).get("namespace")
    name = body["involvedObject"]["name"]
    try:
        api.create_namespaced_event(namespace, body, _request_timeout=(2.0, 5.0))
    except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
        metrics.event_errors.inc()
        log.warning("could not post event %s on pod %s/%s: %s", body["reason"], namespace, name, exc)  # fmt: skip
        return False
    metrics.events.labels(body["reason"]).inc()
    log.info(
        "pod event",
        extra={
            "fields": {
                "reason": body["reason"],
                "namespace": namespace,
                "pod": name,
                "detail": body["message"],
            }
        },
    )
    return True


class ReporterMetrics(EventMetrics):
    """The reporter's metrics, in the webhook's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(registry)
        self.leader = Gauge(
            "sidecred_event_reporter_leader",
            "1 while this replica holds the event reporter's Lease.",
            registry=registry,
        )
        self.scans = Counter(
            "sidecred_event_reporter_scans", "Passes over the injected pods.", registry=registry
        )
        self.readyz_reads = Counter(
            "sidecred_sidecar_readyz_reads",
            "Sidecar /readyz reads through the pod proxy, by result (ready, not-ready, error).",
            ["result"],
            registry=registry,
        )
        self.not_ready = Gauge(
            "sidecred_sidecars_not_ready",
            "Sidecars found without credentials at the last pass, by cause code (STS, broker).",
            ["code"],
            registry=registry,
        )


@dataclass
class EventReporter:
    """The leader-elected loop: elect, then scan the injected pods every SCAN_INTERVAL_SECONDS."""

    api: client.CoreV1Api
    elector: LeaseElector
    pods: PodCache
    metrics: ReporterMetrics
    scan_interval: float = SCAN_INTERVAL_SECONDS
    retry_period: float = RETRY_PERIOD_SECONDS
    clock: Callable[[], float] = time.time
    last: dict[str, dict[str, PodEvent]] = field(default_factory=dict)  # pod uid -> reason -> event
    _stopping: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _seeded: bool = False
    _pods_started: bool = False

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="event-reporter", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.elector.release()
        if self._pods_started:
            self.pods.stop()

    def run(self) -> None:
        next_scan = 0.0
        while not self._stopping.is_set():
            leading = self.elector.step()
            self.metrics.leader.set(1 if leading else 0)
            if not leading:
                self._seeded = False  # a later term reads back what others posted meanwhile
            elif self.clock() >= next_scan and self.prepare_scan():
                self.scan_once()
                next_scan = self.clock() + self.scan_interval
            self._stopping.wait(self.retry_period)

    def prepare_scan(self) -> bool:
        """Start the pod watch and read back earlier events; True once both are done."""
        if not self._pods_started:
            self.pods.start()
            self._pods_started = True
        if not self.pods.synced:
            return False
        if not self._seeded:
            self._seeded = self.read_back_events()
        return self._seeded

    def read_back_events(self) -> bool:
        """Load the latest sidecred Events of each pod; False if the API could not answer."""
        try:
            response = self.api.list_event_for_all_namespaces(
                label_selector=f"{EVENT_LABEL}=true",
                _preload_content=False,
                _request_timeout=(2.0, 30.0),
            )
            items = json.loads(response.data).get("items") or []
        except ApiException as exc:
            if exc.status == 403:  # RBAC without events list: report, at worst repeating once
                log.warning(
                    "cannot list events (HTTP 403); after a leader change each failing pod may "
                    "get its CredentialsUnavailable event again once"
                )
                return True
            log.warning("could not read back sidecred events: HTTP %s", exc.status)
            return False
        except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            log.warning("could not read back sidecred events: %s", exc)
            return False
        for item in items:
            entry = event_from_object(item)
            if entry is not None:
                self._remember(*entry)
        return True

    def _remember(self, uid: str, event: PodEvent) -> None:
        known = self.last.setdefault(uid, {})
        if event.reason not in known or known[event.reason].at <= event.at:
            known[event.reason] = event

    def still_leading(self) -> bool:
        """Renew the Lease when due, so a long pass (slow sidecars) never outlives it."""
        if self.clock() - self.elector.renewed_at >= self.retry_period:
            self.elector.step()
        return self.elector.leading

    def scan_once(self) -> None:
        """One pass: read the sidecars that need it, post the events that are due."""
        not_ready: dict[str, int] = {}
        live = set()
        for pod in self.pods.objects():
            uid = str((pod.get("metadata") or {}).get("uid") or "")
            live.add(uid)
            last = self.last.get(uid, {})
            if not needs_reading(pod, last):
                continue
            if not self.still_leading():
                log.info("lost the event reporter's lease during a pass; stopping it")
                break
            try:
                health = read_sidecar_health(self.api, pod)
            except HealthUnavailable as exc:
                self.metrics.readyz_reads.labels("error").inc()
                log.info("could not read a sidecar's readiness: %s", exc)
                continue
            self.metrics.readyz_reads.labels("ready" if health.ready else "not-ready").inc()
            if not health.ready and health.code != NOT_READY_STARTING:
                not_ready[health.code] = not_ready.get(health.code, 0) + 1
            event = event_due(pod, health, last, self.clock())
            if event is not None:
                self.post(pod, uid, event)
        for uid in set(self.last) - live:
            del self.last[uid]  # the pod is gone
        self.metrics.not_ready.clear()
        for code, count in not_ready.items():
            self.metrics.not_ready.labels(code).set(count)
        self.metrics.scans.inc()

    def post(self, pod: Mapping[str, Any], uid: str, event: PodEvent) -> None:
        body = build_event(pod, event, self.elector.identity)
        if post_event(self.api, pod, body, self.metrics):
            self._remember(uid, event)
