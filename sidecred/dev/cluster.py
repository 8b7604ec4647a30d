"""A cluster's worth of realistic objects for the API stub: namespaces and pods as the API
server stores them (ownerReferences, managedFields, status), 6 to 11 KB of JSON per pod.

Injected pods are what the webhook's own mutation makes of a Deployment's pod (in
broker mode, so the broker finds its canonical sidecar), as the kubelet reports
them running; ordinary pods are the same applications without a role. Each pod
is built from one of a few templates, mutated once, so a hundred thousand cost
seconds. Used by `bench/scale.py` and the scale smoke test.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import uuid
from collections.abc import Iterator
from typing import Any

from sidecred.pods.names import SIDECAR_NAME
from sidecred.pods.pod import find_sidecar
from sidecred.pods.settings import Settings
from sidecred.webhook.decide import decide_mutation
from sidecred.webhook.mutate import apply_patch
from sidecred.webhook.review import pod_request

ROLE = "arn:aws:iam::111122223333:role/app-reader"
STAMP = "2026-11-30T16:00:00Z"
# Env entries per template: the templates' JSON runs from about 6 to 11 KB.
TEMPLATE_ENV = (0, 4, 8)


def broker_settings(ca_pem: str) -> Settings:
    """The options a broker-mode webhook and its broker share in the generated cluster."""
    return Settings(
        base_role_arn="arn:aws:iam::111122223333:role/",
        credential_source="broker",
        broker_url="https://sidecred-broker.sidecred-system.svc:8444",
        broker_ca=ca_pem,
        region="us-east-1",
    )


def _managed(manager: str, operation: str, fields: dict[str, Any], sub: str = "") -> dict[str, Any]:
    entry = {
        "manager": manager,
        "operation": operation,
        "apiVersion": "v1",
        "time": STAMP,
        "fieldsType": "FieldsV1",
        "fieldsV1": fields,
    }
    if sub:
        entry["subresource"] = sub
    return entry


def namespace_object(name: str) -> dict[str, Any]:
    """A namespace permitting the generated role, with the labels and fields a real one has."""
    return {
        "metadata": {
            "name": name,
            "labels": {"kubernetes.io/metadata.name": name, "team": name.split("-")[0]},
            "annotations": {"iam.amazonaws.com/permitted": ROLE},
            "managedFields": [
                _managed(
                    "kubectl-client-side-apply",
                    "Update",
                    {
                        "f:metadata": {
                            "f:annotations": {".": {}, "f:iam.amazonaws.com/permitted": {}},
                            "f:labels": {
                                ".": {},
                                "f:kubernetes.io/metadata.name": {},
                                "f:team": {},
                            },
                        }
                    },
                )
            ],
        },
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    }


def _app_container(name: str, env_count: int) -> dict[str, Any]:
    env: list[dict[str, Any]] = [
        {"name": f"APP_SETTING_{i:02d}", "value": f"value-{i:02d}"} for i in range(env_count)
    ]
    env.append({"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}})
    probe = {"httpGet": {"path": "/healthz", "port": 8080, "scheme": "HTTP"},
             "periodSeconds": 10, "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 3}  # fmt: skip
    return {
        "name": name,
        "image": f"registry.example.com/team/{name}:1.42.7",
        "command": ["/app/server"],
        "args": ["--listen=:8080", "--log-format=json"],
        "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
        "env": env,
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
        "volumeMounts": [
            {"name": "config", "mountPath": "/etc/app", "readOnly": True},
            {"name": "kube-api-access", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": True},
        ],
        "livenessProbe": probe,
        "readinessProbe": probe,
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "imagePullPolicy": "IfNotPresent",
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    }  # fmt: skip


def _app_pod(env_count: int, role: str | None) -> dict[str, Any]:
    annotations = {"prometheus.io/scrape": "true", "prometheus.io/port": "8080"}
    if role is not None:
        annotations["iam.amazonaws.com/role"] = role
    return {
        "metadata": {
            "generateName": "app-7d9f8c6b5-",
            "namespace": "ns",
            "labels": {"app": "app", "pod-template-hash": "7d9f8c6b5", "version": "1.42.7"},
            "annotations": annotations,
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "app-7d9f8c6b5",
                                 "uid": "5e0c9a63-2b1f-4c53-9a1e-3f7a2c1d0b9e", "controller": True,
                                 "blockOwnerDeletion": True}],
        },
        "spec": {
            "serviceAccountName": "app",
            "containers": [_app_container("app", env_count)]
            + ([_app_container("log-shipper", 2)] if env_count else []),
            "volumes": [
                {"name": "config", "configMap": {"name": "app-config", "defaultMode": 420}},
                {"name": "kube-api-access", "projected": {"defaultMode": 420, "sources": [
                    {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                    {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                    {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
                ]}},
            ],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "nodeName": "node-0",
            "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
            "schedulerName": "default-scheduler",
            "tolerations": [
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
            ],
            "priority": 0,
            "enableServiceLinks": True,
            "preemptionPolicy": "PreemptLowerPriority",
        },
    }  # fmt: skip


def _container_status(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "state": {"running": {"startedAt": STAMP}},
        "lastState": {},
        "ready": True,
        "restartCount": 0,
        "image": f"registry.example.com/team/{name}:1.42.7",
        "imageID": f"registry.example.com/team/{name}@sha256:{'ab' * 32}",
        "containerID": f"containerd://{'cd' * 32}",
        "started": True,
    }


def _status(containers: list[dict[str, Any]], sidecar_list: str | None) -> dict[str, Any]:
    conditions = [
        {"type": kind, "status": "True", "lastProbeTime": None, "lastTransitionTime": STAMP}
        for kind in ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled")
    ]  # fmt: skip
    status: dict[str, Any] = {
        "phase": "Running",
        "conditions": conditions,
        "hostIP": "10.0.0.10",
        "hostIPs": [{"ip": "10.0.0.10"}],
        "podIP": "10.1.0.10",
        "podIPs": [{"ip": "10.1.0.10"}],
        "startTime": STAMP,
        "containerStatuses": [_container_status(c["name"]) for c in containers],
        "qosClass": "Burstable",
    }
    if sidecar_list == "initContainers":
        status["initContainerStatuses"] = [_container_status(SIDECAR_NAME)]
    elif sidecar_list == "containers":
        status["containerStatuses"].append(_container_status(SIDECAR_NAME))
    return status


def _managed_fields(pod: dict[str, Any]) -> list[dict[str, Any]]:
    """managedFields naming every field the controller and the kubelet set, as real ones do."""

    def fields_of(value: Any, depth: int = 0) -> Any:
        if depth > 2:
            return {}
        if isinstance(value, dict):
            return {f"f:{key}": fields_of(item, depth + 1) for key, item in value.items()}
        if isinstance(value, list):
            named = [item for item in value if isinstance(item, dict) and "name" in item]
            return {f'k:{{"name":"{item["name"]}"}}': fields_of(item, depth + 1) for item in named}
        return {}

    spec = {k: v for k, v in pod["spec"].items() if k != "nodeName"}
    return [
        _managed(
            "kube-controller-manager",
            "Update",
            {
                "f:metadata": fields_of(
                    {k: pod["metadata"][k] for k in ("labels", "ownerReferences")}
                ),
                "f:spec": fields_of(spec),
            },
        ),
        _managed("kubelet", "Update", {"f:status": fields_of(pod["status"])}, "status"),
    ]


@dataclasses.dataclass
class PodFactory:
    """Realistic pods, injected by the webhook's mutation under `config` or ordinary."""

    config: Settings

    def __post_init__(self) -> None:
        self._injected = [self._template(env, ROLE) for env in TEMPLATE_ENV]
        self._ordinary = [self._template(env, None) for env in TEMPLATE_ENV]

    def _template(self, env_count: int, role: str | None) -> bytes:
        pod = _app_pod(env_count, role)
        sidecar_list = None
        if role is not None:
            request = pod_request(pod, namespace="ns")
            decision = decide_mutation(request, namespace_object("ns"), self.config)
            if not decision.allowed:
                raise ValueError(f"the webhook refused the template pod: {decision.message}")
            pod = apply_patch(pod, decision.patch or [])  # with the injected label
            found = find_sidecar(pod)
            sidecar_list = found[0] if found else None
        apps = [c for c in pod["spec"]["containers"] if c["name"] != SIDECAR_NAME]
        pod["status"] = _status(apps, sidecar_list)
        pod["metadata"]["managedFields"] = _managed_fields(pod)
        return json.dumps(pod, separators=(",", ":")).encode()

    def pod(self, namespace: str, index: int, *, injected: bool) -> dict[str, Any]:
        """Pod number `index` of `namespace` (the templates take turns)."""
        templates = self._injected if injected else self._ordinary
        pod: dict[str, Any] = json.loads(templates[index % len(templates)])
        metadata = pod["metadata"]
        metadata["name"] = f"app-7d9f8c6b5-{index:05d}{'i' if injected else 'o'}"
        metadata["namespace"] = namespace
        metadata["uid"] = str(uuid.uuid4())
        metadata["creationTimestamp"] = STAMP
        pod["status"]["podIP"] = f"10.{1 + index // 65536 % 200}.{index // 256 % 256}.{index % 256}"
        pod["status"]["podIPs"] = [{"ip": pod["status"]["podIP"]}]
        return pod


def namespace_names(count: int) -> list[str]:
    return [f"team{i % 97}-ns{i:05d}" for i in range(count)]


def cluster_pods(
    factory: PodFactory, namespaces: list[str], injected: int, ordinary: int
) -> Iterator[dict[str, Any]]:
    """`injected` and `ordinary` pods spread over the namespaces, interleaved."""
    for index in range(max(injected, ordinary)):
        namespace = namespaces[index % len(namespaces)]
        if index < injected:
            yield factory.pod(namespace, index, injected=True)
        if index < ordinary:
            yield factory.pod(namespace, index, injected=False)


def changed(pod: dict[str, Any], generation: int) -> dict[str, Any]:
    """The pod after a status update (what most watch events of a running cluster are)."""
    updated = copy.deepcopy(pod)
    updated["status"]["conditions"][0]["lastTransitionTime"] = f"2026-12-01T00:{generation // 60 % 60:02d}:{generation % 60:02d}Z"  # fmt: skip
    return updated
