"""A catalogue of admission requests, built as the API server builds them, for the
matchCondition tests: ordinary pods of each controller kind, annotated and injected
pods, ephemeral containers, exec/attach, TokenRequests and Namespaces."""

from __future__ import annotations

import copy
from typing import Any

from sidecred.webhook.review import admission_request, pod_request

ROLE = "arn:aws:iam::111122223333:role/shop-reader"
SIDECAR_IMAGE = "ghcr.io/sidecred/sidecred:0.1.0"
KUBELET = {
    "username": "system:node:ip-10-0-1-17.eu-west-1.compute.internal",
    "groups": ["system:nodes", "system:authenticated"],
}
DEVELOPER = {
    "username": "alice@example.com",
    "uid": "9f1c3a52-1d0e-4a1e-b1f4-7b2b3f0c9d11",
    "groups": ["developers", "system:authenticated"],
    "extra": {"authentication.kubernetes.io/credential-id": ["X509SHA256=ab12"]},
}


def owned_pod(
    owner_kind: str, owner: str, *, name: str | None = None, **metadata: Any
) -> dict[str, Any]:
    """A pod as a controller creates it: generateName (no name) unless `name`."""
    meta: dict[str, Any] = {
        "namespace": "shop",
        "labels": {"app": owner},
        "ownerReferences": [
            {"apiVersion": "apps/v1", "kind": owner_kind, "name": owner, "uid": "u-" + owner}
        ],
        **metadata,
    }
    if name:
        meta["name"] = name
    else:
        meta["generateName"] = owner + "-"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": {
            "serviceAccountName": "default",
            "containers": [{"name": "app", "image": "registry.example.com/app:1"}],
        },
    }


def injected(pod: dict[str, Any]) -> dict[str, Any]:
    """`pod` as the mutating webhook leaves it: annotated, labelled, with the sidecar."""
    pod = copy.deepcopy(pod)
    pod["metadata"].setdefault("name", pod["metadata"].get("generateName", "p-") + "x7k2q")
    pod["metadata"]["annotations"] = {
        "iam.amazonaws.com/role": ROLE,
        "sidecred.dev/injected": ROLE,
    }
    pod["metadata"]["labels"]["sidecred.dev/injected"] = "true"
    pod["spec"]["initContainers"] = [
        {"name": "sidecred", "image": SIDECAR_IMAGE, "restartPolicy": "Always"}
    ]
    pod["spec"]["volumes"] = [
        {"name": "sidecred-token", "emptyDir": {"medium": "Memory"}},
        {
            "name": "sidecred-sa-token",
            "projected": {
                "sources": [{"serviceAccountToken": {"audience": "sidecred", "path": "token"}}]
            },
        },
    ]
    return pod


def annotated(pod: dict[str, Any], **annotations: str) -> dict[str, Any]:
    pod = copy.deepcopy(pod)
    pod["metadata"]["annotations"] = dict(annotations)
    return pod


def labelled(pod: dict[str, Any], **labels: str) -> dict[str, Any]:
    """`pod` with exactly `labels` (for an UPDATE that removes some)."""
    pod = copy.deepcopy(pod)
    pod["metadata"]["labels"] = dict(labels)
    return pod


def with_spec(pod: dict[str, Any], **spec: Any) -> dict[str, Any]:
    pod = copy.deepcopy(pod)
    pod["spec"].update(spec)
    return pod


def updated(pod: dict[str, Any], new: dict[str, Any] | None = None, **kwargs: Any) -> dict:
    """An UPDATE from `pod` to `new` (default: `pod` with a label changed)."""
    if new is None:
        new = copy.deepcopy(pod)
        new["metadata"]["labels"]["revision"] = "2"
    return pod_request(new, operation="UPDATE", old_pod=pod, **kwargs)


def debug(pod: dict[str, Any], target: str | None = None, **fields: Any) -> dict[str, Any]:
    """`kubectl debug` on `pod`: an UPDATE of pods/ephemeralcontainers."""
    new = copy.deepcopy(pod)
    container: dict[str, Any] = {"name": "debugger-4hx9z", "image": "busybox:1.36", **fields}
    if target:
        container["targetContainerName"] = target
    new["spec"]["ephemeralContainers"] = [container]
    return pod_request(
        new,
        operation="UPDATE",
        old_pod=pod,
        sub_resource="ephemeralcontainers",
        user_info=DEVELOPER,
    )


def connect(sub_resource: str, container: str | None, pod: str = "web-0") -> dict[str, Any]:
    """`kubectl exec`/`attach`: CONNECT with a PodExecOptions or PodAttachOptions object."""
    kind = "PodExecOptions" if sub_resource == "exec" else "PodAttachOptions"
    options: dict[str, Any] = {"kind": kind, "apiVersion": "v1", "stdin": True, "stdout": True}
    if container:
        options["container"] = container
    if sub_resource == "exec":
        options["command"] = ["sh"]
    return admission_request(
        kind={"group": "", "version": "v1", "kind": kind},
        resource={"group": "", "version": "v1", "resource": "pods"},
        sub_resource=sub_resource,
        operation="CONNECT",
        obj=options,
        namespace="shop",
        name=pod,
        user_info=DEVELOPER,
    )


def token_request(
    audiences: list[str] | None, user: dict[str, Any], bound_pod: str | None = None
) -> dict[str, Any]:
    """A TokenRequest (serviceaccounts/token CREATE) as the API server sends it."""
    spec: dict[str, Any] = {"expirationSeconds": 3600}
    if audiences is not None:
        spec["audiences"] = audiences
    if bound_pod:
        spec["boundObjectRef"] = {"kind": "Pod", "apiVersion": "v1", "name": bound_pod, "uid": "u1"}
    return admission_request(
        kind={"group": "authentication.k8s.io", "version": "v1", "kind": "TokenRequest"},
        resource={"group": "", "version": "v1", "resource": "serviceaccounts"},
        sub_resource="token",
        operation="CREATE",
        obj={
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": "default", "namespace": "shop", "creationTimestamp": None},
            "spec": spec,
            "status": {"token": "", "expirationTimestamp": None},
        },
        namespace="shop",
        name="default",
        user_info=user,
    )


def namespace_request(
    name: str, annotations: dict[str, str] | None, *, old: dict[str, str] | None = None
) -> dict[str, Any]:
    """A Namespace CREATE (or UPDATE from `old` annotations); the API server sets
    request.namespace to the namespace's own name."""

    def namespace(values: dict[str, str] | None) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "name": name,
            "labels": {"kubernetes.io/metadata.name": name},
            "creationTimestamp": None,
        }
        if values is not None:
            meta["annotations"] = values
        return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta, "spec": {}}

    update = old is not None
    return admission_request(
        kind={"group": "", "version": "v1", "kind": "Namespace"},
        resource={"group": "", "version": "v1", "resource": "namespaces"},
        operation="UPDATE" if update else "CREATE",
        obj=namespace(annotations),
        old_obj=namespace(old) if update else None,
        namespace=name,
        name=name,
        user_info=DEVELOPER,
    )


DEPLOYMENT_POD = owned_pod("ReplicaSet", "web-7c9f8d6b5")
STATEFUL_POD = owned_pod("StatefulSet", "db", name="db-0")
DAEMON_POD = owned_pod("DaemonSet", "node-agent")
JOB_POD = owned_pod("Job", "migrate-28391")
BARE_POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "shell", "namespace": "shop"},
    "spec": {"containers": [{"name": "shell", "image": "busybox"}]},
}
ANNOTATED_POD = annotated(DEPLOYMENT_POD, **{"iam.amazonaws.com/role": ROLE})
INJECTED_POD = injected(STATEFUL_POD)
FORGED_SIDECAR = {
    "name": "sidecred",
    "image": "evil.example/x:1",
    "command": ["sidecred", "sidecar"],
}


def _container(**fields: Any) -> dict[str, Any]:
    return {"name": "worker", "image": "registry.example.com/worker:3", **fields}


def _with_volume(volume: dict[str, Any]) -> dict[str, Any]:
    return with_spec(BARE_POD, volumes=[volume])


def _token_volume(name: str, audience: str) -> dict[str, Any]:
    token = {"serviceAccountToken": {"audience": audience, "path": "token"}}
    return {"name": name, "projected": {"sources": [token]}}


SIDECRED_ENV_CONTAINER = _container(env=[{"name": "SIDECRED_ROLE_ARN", "value": ROLE}])

# Unannotated pods with one trait of the sidecar each: all must reach the validator.
FORGERIES: dict[str, dict[str, Any]] = {
    "container-named-sidecred-native": with_spec(BARE_POD, initContainers=[FORGED_SIDECAR]),
    "container-named-sidecred": with_spec(BARE_POD, containers=[_container(), FORGED_SIDECAR]),
    "sidecar-image-args-only": with_spec(
        BARE_POD, containers=[_container(image=SIDECAR_IMAGE, args=["sidecar"])]
    ),
    "sidecar-image-by-digest": with_spec(
        BARE_POD, containers=[_container(image="ghcr.io/sidecred/sidecred@sha256:" + "a" * 64)]
    ),
    "sidecar-image-uppercase-registry": with_spec(
        BARE_POD, containers=[_container(image="GHCR.IO/sidecred/sidecred:0.1.0")]
    ),
    "sidecar-image-registry-port": with_spec(
        BARE_POD, containers=[_container(image="ghcr.io:443/sidecred/sidecred:0.1.0")]
    ),
    "shell-calls-sidecar": with_spec(
        BARE_POD, containers=[_container(command=["sh", "-c", "exec sidecred sidecar"])]
    ),
    "python-module-sidecar": with_spec(
        BARE_POD,
        containers=[_container(command=["python", "-m", "sidecred.sidecar.main"])],
    ),
    "sidecred-env-literal": with_spec(BARE_POD, containers=[SIDECRED_ENV_CONTAINER]),
    "sidecred-env-value-from": with_spec(
        BARE_POD,
        containers=[
            _container(
                env=[
                    {
                        "name": "SIDECRED_ROLE_ARN",
                        "valueFrom": {"configMapKeyRef": {"name": "c", "key": "role"}},
                    }
                ]
            )
        ],
    ),
    "sidecred-env-in-init-container": with_spec(
        BARE_POD, initContainers=[_container(env=[{"name": "SIDECRED_PORT", "value": "1"}])]
    ),
    "envfrom-prefix-sidecred": with_spec(
        BARE_POD,
        containers=[_container(envFrom=[{"prefix": "SIDECRED_", "configMapRef": {"name": "c"}}])],
    ),
    "envfrom-prefix-part-of-sidecred": with_spec(
        BARE_POD,
        containers=[_container(envFrom=[{"prefix": "SIDE", "secretRef": {"name": "s"}}])],
    ),
    "volume-named-like-sidecreds": _with_volume(
        {"name": "sidecred-token", "emptyDir": {"medium": "Memory"}}
    ),
    "token-volume-sidecred-audience": _with_volume(_token_volume("aws-token", "sidecred")),
    "token-volume-broker-audience": _with_volume(_token_volume("t", "sidecred-broker")),
    "token-volume-audience-case": _with_volume(_token_volume("t", "SIDECRED")),
    "mounts-sidecred-volume": with_spec(
        BARE_POD,
        containers=[_container(volumeMounts=[{"name": "sidecred-sa-token", "mountPath": "/t"}])],
    ),
}

# Pods that look a little like sidecred's but are not: none may reach either webhook.
LOOKALIKES: dict[str, dict[str, Any]] = {
    "envfrom-without-prefix": with_spec(
        BARE_POD, containers=[_container(envFrom=[{"configMapRef": {"name": "settings"}}])]
    ),
    "envfrom-other-prefix": with_spec(
        BARE_POD, containers=[_container(envFrom=[{"prefix": "APP_", "secretRef": {"name": "s"}}])]
    ),
    "aws-env": with_spec(
        BARE_POD, containers=[_container(env=[{"name": "AWS_REGION", "value": "eu-west-1"}])]
    ),
    "sts-audience-token": _with_volume(_token_volume("aws-iam-token", "sts.amazonaws.com")),
    "default-audience-token": _with_volume(
        {"name": "t", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}}
    ),
    "configmap-volume": _with_volume({"name": "creds", "configMap": {"name": "creds"}}),
    "empty-spec-lists": with_spec(
        BARE_POD, initContainers=[], volumes=[], containers=[_container(env=[], envFrom=[])]
    ),
}
