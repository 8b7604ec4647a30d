"""Pod events sidecred posts when a sidecar has no credentials, and the pure decision
of when one is due. Shared by the webhook's reporter (sidecred.webhook.event_reporter)
and the broker, which adds events for the pods it refuses.

- `CredentialsUnavailable` (Warning) naming the role and the cause, STS's or
  the broker's code and message; at most one per pod per RATE_LIMIT_SECONDS;
- `CredentialsAvailable` (Normal) once a pod that had one is ready again.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from prometheus_client import CollectorRegistry, Counter

from sidecred.kube.sidecar_health import (
    NOT_READY_STARTING,
    SidecarHealth,
    container_roles,
    injected_role,
    sidecar_status,
)
from sidecred.pods.annotations import EVENT_LABEL
from sidecred.pods.names import SIDECAR_NAME
from sidecred.pods.pod import find_sidecar

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
    # A not-ready answer may name the one role it is about (a sidecar with several roles).
    named = "" if health.ready else health.role_arn
    role = f'role "{named or injected_role(pod) or "(unknown role)"}"'
    if health.container:
        arn = named or container_roles(pod).get(health.container) or "(unknown role)"
        role = f'the own role "{arn}" of container "{health.container}"'
    unavailable = last.get(UNAVAILABLE)
    if health.ready:
        if awaits_recovery(last):
            until = f" (valid until {health.expires})" if health.expires else ""
            return PodEvent(AVAILABLE, f"sidecar holds credentials for {role}{until}", now)
        return None
    if health.code == NOT_READY_STARTING:
        return None  # the first fetch is still running: nothing has failed yet
    if unavailable is not None and now - unavailable.at < RATE_LIMIT_SECONDS:
        return None
    message = f"sidecar cannot get credentials for {role}: {health.code}: {health.message}"
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


def micro_time(moment: float) -> str:
    """A Kubernetes MicroTime (RFC 3339, microseconds, UTC)."""
    return dt.datetime.fromtimestamp(moment, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
