"""Hypothesis strategies for hostile admission input: pods, annotations, policies, reviews.

Values are drawn mostly from pools of *interesting* strings (the role ARNs,
env names, volume names and paths sidecred cares about, plus near misses),
so the search spends its time where the decisions are, and partly from
arbitrary text and JSON, so the parsers meet junk too.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from hypothesis import strategies as st

from sidecred.pods.annotations import (
    CONTAINER_ROLES_KEY,
    EXTERNAL_ID_KEY,
    INJECTED_KEY,
    SESSION_DURATION_KEY,
    SESSION_NAME_KEY,
    SKIP_CONTAINERS_KEY,
    TOKEN_MODE_KEY,
)
from sidecred.pods.names import SA_TOKEN_DIR, SA_TOKEN_VOLUME, TOKEN_DIR, TOKEN_VOLUME
from sidecred.pods.policy import ALLOWED_ROLES_KEY, PERMITTED_KEY
from sidecred.pods.settings import Settings
from sidecred.pods.sidecar_spec import AUTH_TOKEN, AUTH_TOKEN_FILE, FULL_URI
from sidecred.sidecar import config as sc
from sidecred.webhook.review import admission_request as review_request
from sidecred.webhook.review import pod_request

BASE_ROLE_ARN = "arn:aws:iam::111122223333:role/"
ROLE_KEY = "iam.amazonaws.com/role"
NAMESPACE = "shop"
OUR_URI = sc.credentials_uri(Settings().sidecar_port)

CONFIGS = (
    Settings(base_role_arn=BASE_ROLE_ARN),
    Settings(base_role_arn=BASE_ROLE_ARN, credential_source="assume-role", token_mode="env"),
    Settings(base_role_arn=BASE_ROLE_ARN, sidecar_mode="container", region="eu-west-1"),
    Settings(namespace_policy="off"),
    Settings(base_role_arn="arn:aws-cn:iam::444455556666:role/team/"),
    Settings(
        base_role_arn=BASE_ROLE_ARN,
        credential_source="broker",
        broker_url="https://sidecred-broker.sidecred-system.svc",
        broker_ca="-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    ),
)

ROLES = (
    "shop-reader",
    "shop-writer",
    "team/shop-reader",
    "admin",
    "evil-shop-x",
    BASE_ROLE_ARN + "shop-reader",
    BASE_ROLE_ARN + "admin",
    BASE_ROLE_ARN + "evil-shop-x",
    BASE_ROLE_ARN + "team/shop-x",
    BASE_ROLE_ARN + "Shop-Reader",
    "arn:aws-cn:iam::111122223333:role/shop-reader",
    "arn:aws:iam::444455556666:role/shop-reader",
    "ARN:aws:iam::111122223333:role/shop-reader",
    "arn:aws:iam::111122223333:Role/shop-reader",
    "arn:aws:iam::111122223333:user/shop-reader",
    "shop-reader ",
    " shop-reader",
    "shop-reader\n",
    "shop*",
    "shop-.*",
    "",
    "a" * 65,
    BASE_ROLE_ARN + "a" * 2100,
    "\ud800",
    "shop-r\u00e9ader",
)

PERMITTED = (
    BASE_ROLE_ARN + "shop-.*",
    "shop-.*",
    ".*",
    "",
    "(a+)+$",
    "(a|aa)*b",
    "[",
    "(?i)" + BASE_ROLE_ARN + "shop-.*",
    "arn:aws:iam::\\d{12}:role/shop-[a-z]+",
    "\ud800",
    "(?P<x>a)(?P=x)",
    "a{1001}",
)

ALLOWED = (
    '["shop-*"]',
    '["shop-reader", "team/*"]',
    '["arn:aws:iam::111122223333:role/*"]',
    '["*"]',
    "[]",
    "[1]",
    '{"a": 1}',
    "not json",
    '["\\ud800"]',
    '["shop reader"]',
    '[""]',
    "[" * 5000,
)

ENV_NAMES = (
    FULL_URI,
    FULL_URI.lower(),
    AUTH_TOKEN,
    AUTH_TOKEN_FILE,
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_PROFILE",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    sc.ENV_ROLE_ARN,
    sc.ENV_PORT,
    sc.ENV_TOKEN_MODE,
    sc.ENV_AUTH_TOKEN,
    "LOG_LEVEL",
)

ENV_VALUES = (
    OUR_URI,
    "http://10.0.0.7:61080/v1/credentials",
    "http://127.0.0.1:61080/v1/credentials ",
    BASE_ROLE_ARN + "shop-reader",
    BASE_ROLE_ARN + "admin",
    "61080",
    "8080",
    "env",
    "file",
    "x",
    "",
)

# sidecred.dev/container-roles values: valid for some pods, hostile for others.
CONTAINER_ROLE_MAPS = (
    '{"worker": "shop-writer"}',
    '{"worker": "shop-writer", "app": ""}',
    '{"app": "", "creds": "' + BASE_ROLE_ARN + 'shop-reader"}',
    '{"worker": "admin"}',
    '{"sidecred": "shop-writer"}',
    '{"worker": "shop-writer", "worker": "shop-reader"}',
    '{"app": "shop-writer", "worker": "shop-writer"}',
    '{"app": ["shop-writer"]}',
    '{"Bad_Name": ""}',
    "[]",
    "{",
    "",
)
CONTAINER_NAMES = ("app", "worker", "sidecred", "istio-proxy", "creds", "debugger", "init-db")
VOLUME_NAMES = (TOKEN_VOLUME, SA_TOKEN_VOLUME, "data", "kube-api-access-x7k2p", "host")
# hostPath paths for the "host" volume -> whether it shows the node's view of the
# sidecar's token (the kubelet's pod volumes, /proc/<pid>/root, the runtime's socket).
HOST_PATHS = {
    "/var/log": False,
    "/var/lib/docker/containers": False,
    "/var/lib/kubeletx": False,
    "/": True,
    "/var/lib": True,
    "//var/lib/kubelet/pods/": True,
    "/var/log/../lib/kubelet": True,
    "/proc/1/root": True,
    "/run/containerd/containerd.sock": True,
    "/var/run/docker.sock": True,
}
# Capabilities a container may add -> whether it leaves the container's own view.
CAPABILITIES = {
    "NET_ADMIN": False,
    "NET_RAW": False,
    "SYS_PTRACE": False,
    "CHOWN": False,
    "SYS_ADMIN": True,
    "cap_sys_admin": True,
    "DAC_READ_SEARCH": True,
    "all": True,
}
MOUNT_PATHS = (TOKEN_DIR, TOKEN_DIR + "/", SA_TOKEN_DIR, "/data", "/var/run/secrets/x")
COMMANDS = (
    None,
    ["sidecred", "sidecar"],
    ["sidecred", "sidecar", "--wait-ready"],
    ["/app/server"],
    ["sh", "-c", "exec sidecred sidecar"],
)
IMAGES = (
    "registry.example.com/app:1.0",
    "ghcr.io/sidecred/sidecred-sidecar:0.1.0",
    "evil.example/x:1",
)


_ARBITRARY = object()  # marks the pool slot that draws arbitrary text instead


@st.composite
def text_or(draw: st.DrawFn, pool: tuple[Any, ...]) -> Any:
    """Mostly a pool member, sometimes arbitrary text."""
    value = draw(st.sampled_from((*pool, _ARBITRARY)))
    return draw(st.text(max_size=16)) if value is _ARBITRARY else value


json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.text(max_size=10), children, max_size=4),
    ),
    max_leaves=12,
)


@st.composite
def env_entries(draw: st.DrawFn) -> list[dict[str, Any]]:
    entries = []
    for _ in range(draw(st.integers(0, 4))):
        name = draw(text_or(ENV_NAMES))
        if draw(st.integers(0, 5)) == 0:
            entries.append(
                {"name": name, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
            )
        else:
            entries.append({"name": name, "value": draw(text_or(ENV_VALUES))})
    return entries


@st.composite
def containers(draw: st.DrawFn, name: str, *, init: bool = False) -> dict[str, Any]:
    container: dict[str, Any] = {"name": name, "image": draw(st.sampled_from(IMAGES))}
    command = draw(st.sampled_from(COMMANDS))
    if command is not None:
        container["command"] = list(command)
    if draw(st.booleans()):
        container["env"] = draw(env_entries())
    if draw(st.booleans()):
        mounts = draw(
            st.lists(st.sampled_from(VOLUME_NAMES), max_size=2, unique=True).map(
                lambda names: [{"name": n} for n in names]
            )
        )
        for mount in mounts:
            mount["mountPath"] = draw(st.sampled_from(MOUNT_PATHS))
        container["volumeMounts"] = mounts
    if init and draw(st.booleans()):
        container["restartPolicy"] = "Always"
    if draw(st.integers(0, 3)) == 0:
        container["securityContext"] = draw(security_contexts())
    if draw(st.integers(0, 3)) == 0:
        source: dict[str, Any] = {"configMapRef": {"name": "settings"}}
        prefix = draw(st.sampled_from((None, "APP_", "SIDECRED_", "SIDE", "")))
        if prefix is not None:
            source["prefix"] = prefix
        container["envFrom"] = [source]
    return container


@st.composite
def security_contexts(draw: st.DrawFn) -> dict[str, Any]:
    context: dict[str, Any] = {"runAsUser": draw(st.sampled_from((0, 1000, 65532)))}
    if draw(st.integers(0, 3)) == 0:
        context["privileged"] = draw(st.booleans())
    if draw(st.booleans()):
        added = draw(st.lists(st.sampled_from(sorted(CAPABILITIES)), max_size=2, unique=True))
        context["capabilities"] = {"add": added}
    return context


@st.composite
def annotations(draw: st.DrawFn) -> dict[str, str]:
    result: dict[str, str] = {}
    if draw(st.integers(0, 9)) > 0:
        result[ROLE_KEY] = draw(text_or(ROLES))
    optional = {
        INJECTED_KEY: text_or(ROLES),
        SKIP_CONTAINERS_KEY: text_or(("app", "sidecred", "worker,app", "Bad_Name", ",,")),
        SESSION_DURATION_KEY: text_or(("3600", "43200", "900", "43201", "1e4", " 7200 ")),
        TOKEN_MODE_KEY: text_or(("file", "env", "FILE", "none")),
        EXTERNAL_ID_KEY: text_or(("ext-123", "a", "x" * 1300)),
        SESSION_NAME_KEY: text_or(("my-session", "bad session", "s" * 70)),
        CONTAINER_ROLES_KEY: text_or(CONTAINER_ROLE_MAPS),
        "iam.amazonaws.com/Role": text_or(ROLES),
    }
    for key, values in optional.items():
        if draw(st.integers(0, 5)) == 0:
            result[key] = draw(values)
    return result


@st.composite
def pods(draw: st.DrawFn) -> dict[str, Any]:
    """A pod as the API server would send it, with hostile choices in every field sidecred reads."""
    names = draw(st.lists(st.sampled_from(CONTAINER_NAMES), min_size=1, max_size=4, unique=True))
    split = draw(st.integers(0, len(names) - 1))
    init_names, app_names = names[:split], names[split:]
    metadata: dict[str, Any] = {"annotations": draw(annotations())}
    if draw(st.booleans()):
        metadata["name"] = "web-0"
    else:
        metadata["generateName"] = "web-7d9c5b6f4-"
    if draw(st.booleans()):
        metadata["namespace"] = draw(st.sampled_from((NAMESPACE, "other")))
    if draw(st.integers(0, 4)) == 0:
        metadata["ownerReferences"] = [
            {"apiVersion": "batch/v1", "kind": "Job", "name": "j", "uid": "u"}
        ]
    spec: dict[str, Any] = {"containers": [draw(containers(n)) for n in app_names]}
    if init_names:
        spec["initContainers"] = [draw(containers(n, init=True)) for n in init_names]
    if draw(st.booleans()):
        volumes = draw(st.lists(st.sampled_from(VOLUME_NAMES), max_size=3, unique=True))
        spec["volumes"] = [
            {"name": v, "hostPath": {"path": draw(st.sampled_from(sorted(HOST_PATHS)))}}
            if v == "host"
            else {"name": v, "emptyDir": {}}
            for v in volumes
        ]
    if draw(st.integers(0, 3)) == 0:
        audience = draw(st.sampled_from(AUDIENCES))
        token = {"serviceAccountToken": {"audience": audience, "path": "token"}}
        spec.setdefault("volumes", []).append({"name": "tokens", "projected": {"sources": [token]}})
    if draw(st.integers(0, 3)) == 0:
        spec["imagePullSecrets"] = [{"name": draw(st.sampled_from(("registry", "registry-corp")))}]
    for flag in ("hostNetwork", "shareProcessNamespace", "hostPID", "hostIPC"):
        if draw(st.integers(0, 5)) == 0:
            spec[flag] = True
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, (*prefix, index))
    return found


@st.composite
def junked(draw: st.DrawFn, value: Any) -> Any:
    """`value` with one to three of its nodes replaced by arbitrary JSON."""
    result = copy.deepcopy(value)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(result)))
        junk = draw(json_values)
        if not path:
            return junk
        parent = result
        for part in path[:-1]:
            parent = parent[part]
        parent[path[-1]] = junk
    return result


def _json_kind(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return repr(value)
    return "number" if isinstance(value, int | float) else type(value).__name__


WRONG_TYPES = (None, True, 5, 1.5, "x", [], {}, [5], {"k": 5})


@st.composite
def retyped(draw: st.DrawFn, value: Any) -> Any:
    """`value` with one of its fields given a value of another JSON type (`envFrom: 5`,
    `mountPath: null`, `imagePullSecrets: {}`): what a direct caller can send and the
    API server never does."""
    result = copy.deepcopy(value)
    paths = [p for p in _paths(result) if p]
    if not paths:
        return result
    path = draw(st.sampled_from(paths))
    parent = result
    for part in path[:-1]:
        parent = parent[part]
    current = parent[path[-1]]
    choices = [w for w in WRONG_TYPES if _json_kind(w) != _json_kind(current)]
    parent[path[-1]] = copy.deepcopy(draw(st.sampled_from(choices)))
    return result


@st.composite
def namespaces(draw: st.DrawFn) -> dict[str, Any] | None:
    if draw(st.integers(0, 7)) == 0:
        return None
    policy: dict[str, str] = {}
    if draw(st.integers(0, 3)) > 0:
        policy[PERMITTED_KEY] = draw(text_or(PERMITTED))
    if draw(st.booleans()):
        policy[ALLOWED_ROLES_KEY] = draw(text_or(ALLOWED))
    return {"metadata": {"name": NAMESPACE, "annotations": policy}}


def admission_request(
    pod: Any,
    *,
    operation: str = "CREATE",
    old_pod: Any = None,
    sub_resource: str = "",
    uid: str = "705ab4f5-6393-11e8-b7cc-42010a800002",
) -> dict[str, Any]:
    return dict(
        pod_request(
            pod,
            operation=operation,
            old_pod=old_pod,
            namespace=NAMESPACE,
            sub_resource=sub_resource,
            uid=uid,
        )
    )


@st.composite
def requests(draw: st.DrawFn, *, junk: bool = True) -> dict[str, Any]:
    """An AdmissionRequest for a pod CREATE, UPDATE or ephemeral-container UPDATE."""
    pod = draw(pods())
    if junk:
        damage = draw(st.integers(0, 5))
        if damage == 0:
            pod = draw(junked(pod))
        elif damage == 1:
            pod = draw(retyped(pod))
    kind = draw(st.sampled_from(("CREATE", "CREATE", "UPDATE", "ephemeral")))
    if kind == "CREATE":
        return admission_request(pod)
    if not isinstance(pod, dict) or draw(st.integers(0, 3)) == 0:
        old = draw(pods())
    else:
        old = copy.deepcopy(pod)  # the usual UPDATE: a small change to the same pod
        if isinstance(old.get("spec"), dict) and isinstance(old["spec"].get("containers"), list):
            for container in old["spec"]["containers"]:
                if isinstance(container, dict):
                    container["image"] = draw(st.sampled_from(IMAGES))
    if kind == "UPDATE":
        return admission_request(pod, operation="UPDATE", old_pod=old)
    if isinstance(pod, dict) and isinstance(pod.get("spec"), dict):
        debug: dict[str, Any] = {"name": "debugger-x", "image": "busybox"}
        target = draw(st.sampled_from((None, "app", "sidecred", "creds", "worker")))
        if target:
            debug["targetContainerName"] = target
        if draw(st.integers(0, 3)) == 0:
            debug["volumeMounts"] = [
                {"name": draw(st.sampled_from(VOLUME_NAMES)), "mountPath": "/x"}
            ]
        if draw(st.integers(0, 2)) == 0:
            debug["securityContext"] = draw(security_contexts())
        pod["spec"]["ephemeralContainers"] = [debug]
    return admission_request(
        pod, operation="UPDATE", old_pod=old, sub_resource="ephemeralcontainers"
    )


AUDIENCES = ("sidecred", "sidecred-broker", "sts.amazonaws.com", "vault", "", "Sidecred")
USERS = (
    {"username": "system:node:ip-10-0-1-7", "groups": ["system:nodes", "system:authenticated"]},
    {"username": "alice", "groups": ["system:authenticated"]},
    {"username": "system:serviceaccount:shop:web", "groups": ["system:serviceaccounts"]},
    {"username": "bob"},
)


@st.composite
def token_requests(draw: st.DrawFn) -> dict[str, Any]:
    """A `serviceaccounts/token` CREATE (TokenRequest), sometimes junked."""
    spec: dict[str, Any] = {"audiences": draw(st.lists(st.sampled_from(AUDIENCES), max_size=3))}
    if draw(st.booleans()):
        kind = draw(st.sampled_from(("Pod", "Secret", "pod", "")))
        spec["boundObjectRef"] = {"kind": kind, "apiVersion": "v1", "name": "web-0"}
    obj: Any = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}
    if draw(st.integers(0, 2)) == 0:
        obj = draw(junked(obj))
    kind = {"group": "authentication.k8s.io", "version": "v1", "kind": "TokenRequest"}
    resource = {"group": "", "version": "v1", "resource": "serviceaccounts"}
    return dict(
        review_request(
            kind=kind, resource=resource, operation="CREATE", obj=obj, namespace=NAMESPACE,
            name="web", sub_resource="token", user_info=draw(st.sampled_from(USERS)),
        )
    )  # fmt: skip


@st.composite
def connect_requests(draw: st.DrawFn) -> dict[str, Any]:
    """A `pods/exec` or `pods/attach` CONNECT, sometimes junked."""
    sub = draw(st.sampled_from(("exec", "attach")))
    kind = "PodExecOptions" if sub == "exec" else "PodAttachOptions"
    obj: Any = {"apiVersion": "v1", "kind": kind, "stdin": True}
    container = draw(st.sampled_from((None, "sidecred", "app", "Sidecred", "")))
    if container is not None:
        obj["container"] = container
    if sub == "exec":
        obj["command"] = ["sh"]
    if draw(st.integers(0, 2)) == 0:
        obj = draw(junked(obj))
    return dict(
        review_request(
            kind={"group": "", "version": "v1", "kind": kind},
            resource={"group": "", "version": "v1", "resource": "pods"},
            operation="CONNECT", obj=obj, namespace=NAMESPACE, name="web-0", sub_resource=sub,
            user_info=draw(st.sampled_from(USERS)),
        )
    )  # fmt: skip


def reviews() -> st.SearchStrategy[dict[str, Any]]:
    """Every kind of review the webhook is registered for: pods, TokenRequests, exec/attach."""
    return st.one_of(requests(), requests(), token_requests(), connect_requests())


def review_bytes(request: dict[str, Any]) -> bytes:
    return json.dumps(
        {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}
    ).encode()
