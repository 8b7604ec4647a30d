"""The JSON type of every pod field sidecred reads, and the one check against it.

The API server decodes every object into Go types before admission, so a pod it
sends is well typed; anyone who reaches the webhook directly can send anything.
`POD` lists each field the webhook, the broker and the tools read, with its
type: `pod_problems` walks a pod along it once, before anything reads the pod,
and names every field whose JSON type is wrong (`null` included), so the code
after it may read those fields without checking again. A field only compared for
equality (the canonical sidecar's probes, its resources) needs no entry.

`tests/hardening/webhook/test_shapes.py` records every field the deciders read
and checks that each is here, and puts every wrong JSON type in every field.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sidecred.pods.dns_names import is_dns1123_label, is_dns1123_subdomain

# Containers of all kinds one pod may have. Kubernetes sets no limit, but a pod
# with more is no workload: it only costs the webhook time (every check walks
# every container), so it is refused before any check reads it.
MAX_CONTAINERS = 250
MAX_PROBLEMS = 5  # named in one refusal; the rest are counted


@dataclass(frozen=True)
class Scalar:
    expected: str
    accepts: Callable[[Any], bool]


@dataclass(frozen=True)
class Obj:
    fields: Mapping[str, Shape] = field(default_factory=dict)
    required: tuple[str, ...] = ()
    expected: str = "an object"


@dataclass(frozen=True)
class ListOf:
    item: Shape
    expected: str = "a list"


@dataclass(frozen=True)
class MapOf:
    value: Shape
    expected: str = "a map"


Shape = Scalar | Obj | ListOf | MapOf

STRING = Scalar("a string", lambda v: isinstance(v, str))
BOOLEAN = Scalar("true or false", lambda v: isinstance(v, bool))
INTEGER = Scalar("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool))
DNS_LABEL = Scalar("a DNS-1123 label (at most 63 of a-z, 0-9 and '-')", is_dns1123_label)
DNS_SUBDOMAIN = Scalar(
    "a DNS-1123 subdomain (at most 253 of a-z, 0-9, '-' and '.')", is_dns1123_subdomain
)

SECURITY_CONTEXT = Obj(
    {
        "privileged": BOOLEAN,
        "allowPrivilegeEscalation": BOOLEAN,
        "readOnlyRootFilesystem": BOOLEAN,
        "runAsNonRoot": BOOLEAN,
        "runAsUser": INTEGER,
        "runAsGroup": INTEGER,
        "procMount": STRING,
        "capabilities": Obj({"add": ListOf(STRING), "drop": ListOf(STRING)}),
        "seLinuxOptions": Obj({"type": STRING, "user": STRING, "role": STRING}),
        "seccompProfile": Obj({"type": STRING}),
        "appArmorProfile": Obj({"type": STRING}),
        "windowsOptions": Obj({"hostProcess": BOOLEAN}),
    }
)
# A probe or a lifecycle hook.
HANDLER = Obj({"exec": Obj({"command": ListOf(STRING)}), "httpGet": Obj({"host": STRING})})
FIELD_REF = Obj({"apiVersion": STRING, "fieldPath": STRING})
ENV_VAR = Obj(
    {"name": STRING, "value": STRING, "valueFrom": Obj({"fieldRef": FIELD_REF})}, ("name",)
)
CONTAINER = Obj(
    {
        "name": STRING,
        "image": STRING,
        "command": ListOf(STRING),
        "args": ListOf(STRING),
        "env": ListOf(ENV_VAR),
        "envFrom": ListOf(Obj({"prefix": STRING})),
        "volumeMounts": ListOf(
            Obj({"name": STRING, "mountPath": STRING, "readOnly": BOOLEAN}, ("name",))
        ),
        "restartPolicy": STRING,
        "targetContainerName": STRING,
        "securityContext": SECURITY_CONTEXT,
        "startupProbe": HANDLER,
        "livenessProbe": HANDLER,
        "readinessProbe": HANDLER,
        "lifecycle": Obj({"postStart": HANDLER, "preStop": HANDLER}),
        "terminationMessagePath": STRING,
    },
    ("name",),
)
TOKEN_SOURCE = Obj({"serviceAccountToken": Obj({"audience": STRING, "path": STRING})})
VOLUME = Obj(
    {
        "name": STRING,
        "projected": Obj({"sources": ListOf(TOKEN_SOURCE)}),
        "hostPath": Obj({"path": STRING}),
        "emptyDir": Obj({"medium": STRING}),
    },
    ("name",),
)
ALL_CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")
POD = Obj(
    {
        "metadata": Obj(
            {
                "name": DNS_SUBDOMAIN,
                "namespace": DNS_LABEL,
                "generateName": STRING,
                "annotations": MapOf(STRING),
                "labels": MapOf(STRING),
                "ownerReferences": ListOf(Obj({"kind": STRING})),
            }
        ),
        "spec": Obj(
            {
                "hostNetwork": BOOLEAN,
                "hostPID": BOOLEAN,
                "hostIPC": BOOLEAN,
                "shareProcessNamespace": BOOLEAN,
                **{name: ListOf(CONTAINER) for name in ALL_CONTAINER_LISTS},
                "volumes": ListOf(VOLUME),
                "imagePullSecrets": ListOf(Obj({"name": STRING})),
            }
        ),
    }
)


def shown(value: Any) -> str:
    """What arrived, briefly, for a message (in JSON's words: an object, an array)."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = repr(value) if isinstance(value, str) else str(value)
    return f"{type(value).__name__} {text[:40]}{'...' if len(text) > 40 else ''}"


def _item_path(path: str, index: int, item: Any) -> str:
    """`env[FOO]` for an item with a short printable name, else `env[3]`."""
    name = item.get("name") if isinstance(item, dict) else None
    if isinstance(name, str) and 0 < len(name) <= 63 and name.isprintable() and "]" not in name:
        return f"{path}[{name}]"
    return f"{path}[{index}]"


class _Problems:
    """Problems found so far: the first MAX_PROBLEMS in words, the rest counted."""

    def __init__(self) -> None:
        self.named: list[str] = []
        self.count = 0

    def add(self, path: str, shape: Shape, value: Any) -> None:
        self.say(f"{path} must be {shape.expected}, got {shown(value)}")

    def say(self, problem: str) -> None:
        self.count += 1
        if len(self.named) < MAX_PROBLEMS:
            self.named.append(problem)


def _walk(value: Any, shape: Shape, path: str, found: _Problems) -> None:
    if isinstance(shape, Scalar):
        if not shape.accepts(value):
            found.add(path, shape, value)
    elif isinstance(shape, Obj):
        if not isinstance(value, dict):
            found.add(path, shape, value)
            return
        for key in shape.required:
            if key not in value:
                found.say(f"{path}.{key} is missing" if path else f"{key} is missing")
        for key, child in shape.fields.items():
            if key in value:
                _walk(value[key], child, f"{path}.{key}" if path else key, found)
    elif isinstance(shape, ListOf):
        if not isinstance(value, list):
            found.add(path, shape, value)
            return
        for index, item in enumerate(value):
            _walk(item, shape.item, _item_path(path, index, item), found)
    else:
        if not isinstance(value, dict):
            found.add(path, shape, value)
            return
        for key, item in value.items():
            _walk(item, shape.value, f"{path}[{key[:63]}]", found)


def container_count(pod: Any) -> int:
    """Init, regular and ephemeral containers, counted without reading them."""
    spec = pod.get("spec") if isinstance(pod, dict) else None
    if not isinstance(spec, dict):
        return 0
    lists = (spec.get(name) for name in ALL_CONTAINER_LISTS)
    return sum(len(items) for items in lists if isinstance(items, list))


def pod_problems(pod: Any) -> list[str]:
    """What is wrong with the pod's shape, in words; [] for a pod sidecred can read."""
    if not isinstance(pod, dict):
        return [f"it must be an object, got {shown(pod)}"]
    found = _Problems()
    _walk(pod, POD, "", found)
    if found.count > len(found.named):
        found.named.append(f"and {found.count - len(found.named)} more")
    return found.named
