"""The webhook's pod-event reporter (sidecred.kube.events says what and when).

One webhook replica at a time (webhook.leader) watches sidecred's pods by label
(sidecred.kube.watch.PodCache), reads a not-ready sidecar's /readyz through the pod
proxy (sidecred.kube.sidecar_health) and posts an Event on the pod. The last events of
each pod are remembered by pod uid and, when a replica starts leading, read back from
the API (the Events sidecred posted carry a label), so a new leader never repeats its
predecessor.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from prometheus_client import CollectorRegistry, Counter, Gauge

from sidecred.kube.events import (
    SCAN_INTERVAL_SECONDS,
    EventMetrics,
    PodEvent,
    build_event,
    event_due,
    event_from_object,
    needs_reading,
    post_event,
)
from sidecred.kube.sidecar_health import (
    NOT_READY_STARTING,
    HealthUnavailable,
    read_sidecar_health,
)
from sidecred.kube.watch import PodCache
from sidecred.pods.annotations import EVENT_LABEL
from sidecred.serving.background import Background
from sidecred.webhook.leader import RETRY_PERIOD_SECONDS, LeaseElector

log = logging.getLogger(__name__)


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
    _background: Background = field(init=False, repr=False)
    _seeded: bool = False
    _pods_started: bool = False

    def __post_init__(self) -> None:
        self._background = Background("event-reporter", self.run)

    def start(self) -> None:
        self._background.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._background.stop(timeout)
        self.elector.release()
        if self._pods_started:
            self.pods.stop()

    def run(self) -> None:
        next_scan = 0.0
        while not self._background.stopping.is_set():
            leading = self.elector.step()
            self.metrics.leader.set(1 if leading else 0)
            if not leading:
                self.step_down()
            elif self.clock() >= next_scan and self.prepare_scan():
                self.scan_once()
                next_scan = self.clock() + self.scan_interval
            self._background.stopping.wait(self.retry_period)

    def step_down(self) -> None:
        """Out of the Lease: stop the pod watch and forget its pods, the events seen and the
        gauges, so a follower holds no second copy and exports no stale alert. A later term
        lists again and reads back what others posted meanwhile."""
        self._seeded = False
        if not self._pods_started and not self.last:
            return
        if self._pods_started:
            self.pods.stop(forget=True)
            self._pods_started = False
        self.last.clear()
        self.metrics.not_ready.clear()
        log.info("event reporter stepped down: pod watch stopped, its state dropped")

    def prepare_scan(self) -> bool:
        """Start the pod watch and read back earlier events; True once both are done."""
        if not self._pods_started:
            if self.pods.running:
                return False  # the last term's watch is still winding down
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
                return  # step_down() clears what this pass would have reported
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
