"""`kubectl sidecred audit`: running injected pods whose roles (the pod's, and each container's
own) their namespace's policy no longer permits (revoked since admission), and pods whose
sidecar has no credentials.

`audit_pod` is the pure judgement; `collect_findings` reads the cluster (injected pods by
label, their namespaces, a not-ready sidecar's /readyz through the pod proxy).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubernetes import client

from sidecred.kube.sidecar_health import (
    HealthUnavailable,
    SidecarHealth,
    container_roles,
    injected_role,
    read_sidecar_health,
    roles_by_container,
    sidecar_status,
)
from sidecred.ops.injected import list_injected
from sidecred.pods.annotations import INJECTED_KEY, q
from sidecred.pods.policy import evaluate_policy
from sidecred.pods.settings import Settings

ROLE_NOT_PERMITTED, SIDECAR_NOT_READY = "RoleNotPermitted", "SidecarNotReady"
COLUMNS = ("namespace", "name", "containers", "role", "problem", "detail")


@dataclass(frozen=True)
class Finding:
    namespace: str
    name: str
    role: str
    problem: str  # ROLE_NOT_PERMITTED | SIDECAR_NOT_READY
    detail: str
    containers: str = ""  # the containers using `role`, comma-separated ("" for the sidecar)


def pod_roles_to_audit(pod: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(role ARN, containers using it) for the pod's role and each container's own."""
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    used = roles_by_container(pod)
    roles = []
    pod_role_arn = str(annotations.get(INJECTED_KEY) or "")
    if pod_role_arn:
        users = [name for name, arn in used.items() if arn == pod_role_arn]
        roles.append((pod_role_arn, ",".join(users)))
    roles += [(arn, name) for name, arn in sorted(container_roles(pod).items())]
    return roles


def is_live(pod: Mapping[str, Any]) -> bool:
    phase = (pod.get("status") or {}).get("phase")
    return phase in ("Pending", "Running") and not (pod.get("metadata") or {}).get(
        "deletionTimestamp"
    )


def sidecar_ready(pod: Mapping[str, Any]) -> bool:
    return bool(sidecar_status(pod).get("ready"))


def audit_pod(
    pod: Mapping[str, Any],
    namespace: Mapping[str, Any] | None,
    config: Settings,
    health: SidecarHealth | str | None = None,
) -> list[Finding]:
    """What is wrong with one injected pod now; `health` is its /readyz answer or why it
    could not be read (only needed when the kubelet reports the sidecar not ready)."""
    metadata = pod.get("metadata") or {}
    ns, name, role = str(metadata.get("namespace")), str(metadata.get("name")), injected_role(pod)
    findings = []
    if config.namespace_policy != "off":
        for arn, users in pod_roles_to_audit(pod):
            if namespace is None:
                detail = f"sidecred: namespace {q(ns)} could not be read"
                findings.append(Finding(ns, name, arn, ROLE_NOT_PERMITTED, detail, users))
                continue
            annotations = (namespace.get("metadata") or {}).get("annotations") or {}
            result = evaluate_policy(arn, ns, annotations, config.base_role_arn)
            if not result.permitted:
                findings.append(Finding(ns, name, arn, ROLE_NOT_PERMITTED, result.message, users))
    if not sidecar_ready(pod):
        if isinstance(health, SidecarHealth):
            detail = f"{health.code}: {health.message}" if not health.ready else "ready now"
        else:
            detail = health or "the kubelet reports the sidecar not ready"
        findings.append(Finding(ns, name, role, SIDECAR_NOT_READY, detail))
    return findings


def collect_findings(
    api: client.CoreV1Api, namespace: str | None, config: Settings, selector: str | None = None
) -> list[Finding]:
    """Audit sidecred's live pods in `namespace` (None: every namespace), those matching
    `selector` (kubectl's `-l`) if given."""
    pods = [p for p in list_injected(api, namespace, selector) if is_live(p)]
    namespaces: dict[str, dict[str, Any] | None] = {}
    findings: list[Finding] = []
    for pod in pods:
        ns = pod["metadata"]["namespace"]
        if ns not in namespaces:
            namespaces[ns] = read_namespace(api, ns)
        health: SidecarHealth | str | None = None
        if not sidecar_ready(pod):
            try:
                health = read_sidecar_health(api, pod)
            except HealthUnavailable as exc:
                health = str(exc)
        findings += audit_pod(pod, namespaces[ns], config, health)
    return sorted(findings, key=lambda f: (f.namespace, f.name, f.problem, f.containers))


def read_namespace(api: client.CoreV1Api, name: str) -> dict[str, Any] | None:
    try:
        namespace = json.loads(api.read_namespace(name, _preload_content=False).data)
    except client.ApiException:
        return None
    return namespace if isinstance(namespace, dict) else None


def finding_rows(findings: list[Finding]) -> list[dict[str, str]]:
    return [{column: getattr(f, column) for column in COLUMNS} for f in findings]
