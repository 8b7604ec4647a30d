"""`kubectl sidecred status POD`: the sidecar's readiness, the role each container reaches,
last error and credential expiry, read through the API server's pod proxy (its /readyz and
/metrics) and the pod spec."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

from sidecred.kube.sidecar_health import (
    HealthUnavailable,
    SidecarHealth,
    health_port,
    injected_role,
    proxy_get,
    read_sidecar_health,
    roles_by_container,
    sidecar_status,
)
from sidecred.ops.injected import list_injected

COLUMNS = (
    "namespace",
    "name",
    "ready",
    "role",
    "containers",
    "expires",
    "last_error",
    "sts_calls",
    "sts_failures",
)
EXPIRY_METRIC = "sidecred_credentials_expiry_timestamp_seconds"


def read_sidecar_metrics(api: client.CoreV1Api, pod: Mapping[str, Any]) -> dict[str, float]:
    """The sidecar's samples from /metrics, one value per name ({} if they cannot be read).

    Each series has a `role` label (the pod's role, the containers' own): counters are
    summed over it, the expiry is the earliest one held.
    """
    try:
        status, text = proxy_get(api, pod, "metrics")
        if status != 200:
            return {}
        samples = [s for f in text_string_to_metric_families(text) for s in f.samples]
    except (HealthUnavailable, ValueError):
        return {}
    values: dict[str, float] = {}
    for sample in samples:
        if sample.name == EXPIRY_METRIC:
            held = [v for v in (values.get(sample.name, 0.0), sample.value) if v > 0]
            values[sample.name] = min(held, default=0.0)
        else:
            values[sample.name] = values.get(sample.name, 0.0) + sample.value
    return values


def status_row(
    pod: Mapping[str, Any], health: SidecarHealth | str, metrics: Mapping[str, float]
) -> dict[str, Any]:
    """One row: what the sidecar says, else what the kubelet says and why it could not be asked."""
    metadata = pod.get("metadata") or {}
    expires = ""
    if isinstance(health, SidecarHealth) and health.expires:
        expires = health.expires
    elif metrics.get(EXPIRY_METRIC):
        moment = dt.datetime.fromtimestamp(metrics[EXPIRY_METRIC], dt.UTC)
        expires = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(health, SidecarHealth):
        ready, error = health.ready, "" if health.ready else f"{health.code}: {health.message}"
    else:
        ready, error = bool(sidecar_status(pod).get("ready")), health
    return {
        "namespace": metadata.get("namespace"),
        "name": metadata.get("name"),
        "ready": str(ready).lower(),
        "role": injected_role(pod),
        "containers": roles_by_container(pod),  # container -> the role it reaches ("" none)
        "expires": expires,
        "last_error": error,
        "sts_calls": _count(metrics, "sidecred_sts_calls_total"),
        "sts_failures": _count(metrics, "sidecred_sts_failures_total"),
    }


def _count(metrics: Mapping[str, float], name: str) -> int | str:
    return int(metrics[name]) if name in metrics else ""


def pod_status(api: client.CoreV1Api, pod: Mapping[str, Any]) -> dict[str, Any]:
    """The status row of one injected pod, asking its sidecar through the pod proxy."""
    try:
        health: SidecarHealth | str = read_sidecar_health(api, pod)
    except HealthUnavailable as exc:
        health = str(exc)
    return status_row(pod, health, read_sidecar_metrics(api, pod))


def collect_status(api: client.CoreV1Api, namespace: str, name: str) -> dict[str, Any]:
    """The status row of pod `namespace/name`; LookupError with kubectl's wording if unusable."""
    try:
        pod = json.loads(api.read_namespaced_pod(name, namespace, _preload_content=False).data)
    except client.ApiException as exc:
        if exc.status == 404:
            raise LookupError(f'Error from server (NotFound): pods "{name}" not found') from None
        raise
    if health_port(pod) is None:
        raise LookupError(f'error: pod "{name}" in namespace "{namespace}" has no sidecred sidecar')
    return pod_status(api, pod)


def collect_statuses(
    api: client.CoreV1Api, namespace: str | None, selector: str | None = None
) -> list[dict[str, Any]]:
    """The status rows of every injected pod in `namespace` (None: all), by namespace and name."""
    pods = [p for p in list_injected(api, namespace, selector) if health_port(p) is not None]
    pods.sort(key=lambda p: (p["metadata"].get("namespace", ""), p["metadata"].get("name", "")))
    return [pod_status(api, pod) for pod in pods]
