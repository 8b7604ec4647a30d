"""Every pod field the webhook reads has a JSON type in `pods.shape`, and every wrong type
in every one of them is a 400 naming the field, never a crash.

Three checks that keep each other honest:
- the deciders run over every fixture and a pod that has every field, with the pods
  wrapped so that each field read is recorded: every field read must be in the table
  (reads made only to compare with the canonical sidecar, by `first_difference`,
  accept any type and are left out);
- that pod holds every field of the table;
- each field of the table, in that pod, gets every JSON type it must not have, and
  both webhooks answer 400 `bad-request` naming it.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from sidecred.pods.settings import Settings
from sidecred.pods.shape import (
    MAX_CONTAINERS,
    POD,
    ListOf,
    MapOf,
    Obj,
    Scalar,
    Shape,
)
from sidecred.webhook.decide import Decision, decide_mutation, decide_validation
from sidecred.webhook.mutate import apply_patch
from tests.hardening.webhook.strategies import admission_request
from tests.webhook.fixture_cases import (
    config_of,
    fixture_paths,
    load_case,
    request_of,
)

BASE_ROLE_ARN = "arn:aws:iam::111122223333:role/"
CONFIG = Settings(base_role_arn=BASE_ROLE_ARN)
SHOP = {"metadata": {"name": "shop", "annotations": {"iam.amazonaws.com/permitted": ".*"}}}
TOKEN = "t" * 43


HANDLER = {
    "exec": {"command": ["/bin/check"]},
    "httpGet": {"path": "/ready", "port": 8080, "host": "127.0.0.1"},
}


def full_container(name: str, **fields: Any) -> dict[str, Any]:
    """A container with every field pods.shape.CONTAINER lists."""
    return {
        "name": name,
        "image": f"registry.example.com/{name}:1",
        "command": ["/bin/" + name],
        "args": ["--verbose"],
        "env": [
            {"name": "LOG_LEVEL", "value": "info"},
            {
                "name": "POD_IP",
                "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "status.podIP"}},
            },
        ],
        "envFrom": [{"prefix": "APP_", "configMapRef": {"name": "settings"}}],
        "volumeMounts": [{"name": "logs", "mountPath": f"/var/log/{name}", "readOnly": False}],
        "securityContext": {
            "privileged": False,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "runAsUser": 1000,
            "runAsGroup": 1000,
            "procMount": "Default",
            "capabilities": {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]},
            "seLinuxOptions": {"type": "container_t", "user": "system_u", "role": "system_r"},
            "seccompProfile": {"type": "RuntimeDefault"},
            "appArmorProfile": {"type": "RuntimeDefault"},
            "windowsOptions": {"hostProcess": False},
        },
        # Both kinds of handler in each (the API server takes one; the webhook reads both).
        **{
            probe: copy.deepcopy(HANDLER)
            for probe in ("startupProbe", "livenessProbe", "readinessProbe")
        },
        "lifecycle": {"postStart": copy.deepcopy(HANDLER), "preStop": copy.deepcopy(HANDLER)},
        "terminationMessagePath": "/dev/termination-log",
        **fields,
    }


# A pod with every field of pods.shape.POD, each well typed, that both webhooks admit.
EVERY_FIELD_POD: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {
        "name": "web-0",
        "namespace": "shop",
        "generateName": "web-",
        "labels": {"app": "web"},
        "annotations": {"iam.amazonaws.com/role": "shop-web"},
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web"}],
    },
    "spec": {
        "hostNetwork": False,
        "hostPID": False,
        "hostIPC": False,
        "shareProcessNamespace": False,
        "imagePullSecrets": [{"name": "registry"}],
        "initContainers": [
            full_container("proxy", restartPolicy="Always", targetContainerName="app")
        ],
        # Fields a regular container never has in a valid pod are still typed: only
        # their types matter here, and the webhook reads them from any container.
        "containers": [full_container("app", restartPolicy="Always", targetContainerName="proxy")],
        "ephemeralContainers": [
            full_container("debugger", restartPolicy="Never", targetContainerName="app")
        ],
        "volumes": [
            {"name": "logs", "hostPath": {"path": "/var/log/pods-app"}},
            {"name": "scratch", "emptyDir": {"medium": "Memory"}},
            {
                "name": "vault-token",
                "projected": {
                    "sources": [{"serviceAccountToken": {"audience": "vault", "path": "token"}}]
                },
            },
        ],
    },
}


def patterns(shape: Shape, path: str = "") -> Iterator[tuple[str, Shape]]:
    """Every field of `shape` as a pattern: `spec.containers[].env[].name`, `...annotations.*`."""
    if path:
        yield path, shape
    if isinstance(shape, Obj):
        for key, child in shape.fields.items():
            yield from patterns(child, f"{path}.{key}" if path else key)
    elif isinstance(shape, ListOf):
        yield from patterns(shape.item, f"{path}[]")
    elif isinstance(shape, MapOf):
        yield from patterns(shape.value, f"{path}.*")


SHAPES = dict(patterns(POD))
MAPS = {pattern for pattern, shape in SHAPES.items() if isinstance(shape, MapOf)}


# --- recording the fields the deciders read ------------------------------------------
class Reads(set[str]):
    def record(self, path: str) -> None:
        # first_difference compares any JSON value with the canonical sidecar's, and
        # the _item_path helpers read a list item's name only when it is a string.
        if sys._getframe(2).f_code.co_name not in ("first_difference", "_item_path"):
            self.add(path)


def traced(value: Any, path: str, reads: Reads) -> Any:
    if isinstance(value, dict):
        return TracedDict(value, path, reads)
    if isinstance(value, list):
        return [traced(item, f"{path}[]", reads) for item in value]
    return value


def _child(path: str, key: str) -> str:
    return f"{path}.*" if path in MAPS else f"{path}.{key}" if path else key


class TracedDict(dict):
    def __init__(self, data: dict[str, Any], path: str, reads: Reads) -> None:
        super().__init__({k: traced(v, _child(path, k), reads) for k, v in data.items()})
        self.path, self.reads = path, reads

    def __getitem__(self, key: str) -> Any:
        self.reads.record(_child(self.path, key))
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        self.reads.record(_child(self.path, key))
        return super().get(key, default)


def read_fields(request: dict[str, Any], config: Settings, namespace: Any) -> Reads:
    reads = Reads()
    request = dict(request)
    for key in ("object", "oldObject"):
        if isinstance(request.get(key), dict):
            request[key] = traced(request[key], "", reads)
    decide_mutation(request, namespace, config, new_token=lambda: TOKEN)
    decide_validation(request, namespace, config)
    return reads


def fixture_requests() -> Iterator[tuple[dict[str, Any], Settings, Any]]:
    for path in fixture_paths():
        case = load_case(path)
        req = request_of(case)
        if req["kind"]["kind"] == "Pod":  # TokenRequests and exec options are not pods
            yield req, config_of(case), case.get("namespace")


def request(pod: Any, **overrides: Any) -> dict[str, Any]:
    return admission_request(pod, **overrides)


def every_field_requests() -> Iterator[tuple[dict[str, Any], Settings, Any]]:
    """The pod created, as injected, updated, and debugged, in each sidecar mode."""
    for config in (CONFIG, Settings(base_role_arn=BASE_ROLE_ARN, sidecar_mode="container")):
        pod = copy.deepcopy(EVERY_FIELD_POD)
        yield request(pod), config, SHOP
        decision = decide_mutation(request(pod), SHOP, config, new_token=lambda: TOKEN)
        assert decision.allowed, decision.message
        injected = apply_patch(pod, decision.patch or [])
        yield request(injected), config, SHOP
        changed = copy.deepcopy(injected)
        changed["spec"]["containers"][-1]["image"] = "registry.example.com/app:2"
        yield request(changed, operation="UPDATE", old_pod=injected), config, SHOP
        debugged = copy.deepcopy(injected)
        debugged["spec"]["ephemeralContainers"].append({"name": "dbg", "image": "busybox"})
        yield (
            request(
                debugged, operation="UPDATE", old_pod=injected, sub_resource="ephemeralcontainers"
            ),
            config,
            SHOP,
        )


def test_every_field_the_deciders_read_has_a_type() -> None:
    read: set[str] = set()
    for req, config, namespace in [*fixture_requests(), *every_field_requests()]:
        read |= read_fields(req, config, namespace)
    untyped = sorted(read - set(SHAPES))
    assert not untyped, f"read without a type in pods.shape.POD: {untyped}"
    # The recording works: it saw the fields this test exists for.
    assert {
        "spec.containers[].envFrom",
        "spec.imagePullSecrets",
        "spec.volumes[].hostPath.path",
    } <= read


def present(value: Any, path: str = "") -> set[str]:
    found = {path} if path else set()
    if isinstance(value, dict):
        for key, child in value.items():
            found |= present(child, _child(path, key))
    elif isinstance(value, list):
        for item in value:
            found |= present(item, f"{path}[]")
    return found


def test_the_every_field_pod_has_every_field_and_is_admitted() -> None:
    assert set(SHAPES) <= present(EVERY_FIELD_POD), set(SHAPES) - present(EVERY_FIELD_POD)
    for req, config, namespace in every_field_requests():
        for decide in (decide_mutation, decide_validation):
            decision = decide(req, namespace, config)
            assert decision.reason != "bad-request", decision.message


# --- every wrong type in every field ---------------------------------------------------
JSON_KINDS: dict[str, Any] = {
    "null": None,
    "true": True,
    "5": 5,
    "1.5": 1.5,
    "string": "x",
    "list": [],
    "object": {},
}
RIGHT_KINDS = {"a string": {"string"}, "true or false": {"true"}, "an integer": {"5"}}


def wrong_values(shape: Shape) -> dict[str, Any]:
    if isinstance(shape, Scalar):
        right = RIGHT_KINDS.get(shape.expected, {"string"})
        wrong = {k: v for k, v in JSON_KINDS.items() if k not in right}
        if shape.expected.startswith("a DNS-1123"):
            wrong["invalid name"] = "Web_0"
            wrong["too long"] = "a" * 254
        return wrong
    right = {"an object": {"object"}, "a map": {"object"}, "a list": {"list"}}[shape.expected]
    wrong = {k: v for k, v in JSON_KINDS.items() if k not in right}
    if isinstance(shape, MapOf):
        wrong["map with a number"] = {"k": 5}
    return wrong


def locate(node: Any, pattern: str) -> list[Any] | None:
    """The keys from `node` to the first place `pattern` occurs in it, or None."""
    return _locate(node, pattern.replace("[]", ".[]").split("."))


def _locate(node: Any, parts: list[str]) -> list[Any] | None:
    if not parts:
        return []
    part = parts[0]
    if part == "[]":
        candidates = list(enumerate(node)) if isinstance(node, list) else []
    elif part == "*":
        candidates = list(node.items())[:1] if isinstance(node, dict) else []
    else:
        candidates = [(part, node[part])] if isinstance(node, dict) and part in node else []
    for key, child in candidates:
        found = _locate(child, parts[1:])
        if found is not None:
            return [key, *found]
    return None


def shown_path(pod: Any, keys: list[Any], pattern: str) -> str:
    """How a message names that place: `spec.containers[app].env[LOG_LEVEL].name`; a list
    item by its name when it has a string one, else by index; a map entry by its key."""
    shown, node = "", pod
    parts = pattern.replace("[]", ".[]").split(".")
    for key, part in zip(keys, parts, strict=True):
        node = node[key]
        if part == "[]":
            name = node.get("name") if isinstance(node, dict) else None
            shown += f"[{name}]" if isinstance(name, str) else f"[{key}]"
        elif part == "*":
            shown += f"[{key}]"
        else:
            shown += f".{key}" if shown else key
    return shown


def cases() -> list[Any]:
    return [
        pytest.param(pattern, value, id=f"{pattern}={kind}")
        for pattern, shape in SHAPES.items()
        for kind, value in wrong_values(shape).items()
    ]


def with_value(pod: dict[str, Any], keys: list[Any], value: Any) -> dict[str, Any]:
    pod = copy.deepcopy(pod)
    node = pod
    for key in keys[:-1]:
        node = node[key]
    node[keys[-1]] = value
    return pod


def assert_names(decision: Decision, field: str) -> None:
    assert not decision.allowed and decision.code == 400, decision
    assert decision.reason == "bad-request", decision.message
    assert f"{field} must be " in decision.message or f"{field}[" in decision.message, (
        decision.message
    )


@pytest.mark.parametrize(("pattern", "value"), cases())
def test_a_wrong_type_is_a_400_naming_the_field(pattern: str, value: Any) -> None:
    keys = locate(EVERY_FIELD_POD, pattern)
    assert keys is not None, pattern
    bad = with_value(EVERY_FIELD_POD, keys, value)
    field = shown_path(bad, keys, pattern)
    if value == {"k": 5}:
        field += "[k]"  # the map is right, its value is not
    assert_names(decide_mutation(request(bad), SHOP, CONFIG, new_token=lambda: TOKEN), field)
    assert_names(decide_validation(request(bad), SHOP, CONFIG), field)
    update = request(bad, operation="UPDATE", old_pod=EVERY_FIELD_POD)
    assert_names(decide_validation(update, SHOP, CONFIG), field)


def test_a_pod_with_too_many_containers_is_refused_before_it_is_read() -> None:
    pod = copy.deepcopy(EVERY_FIELD_POD)
    # Junk in every container: the count alone decides, nothing else is read.
    pod["spec"]["containers"] = [{"name": 5, "env": 5} for _ in range(MAX_CONTAINERS)]
    for decide in (decide_mutation, decide_validation):
        decision = decide(request(pod), SHOP, CONFIG)
        assert decision.reason == "too-many-containers" and decision.code == 400, decision
        assert f"{MAX_CONTAINERS + 2} containers" in decision.message
        assert f"at most {MAX_CONTAINERS}" in decision.message
    pod["spec"]["containers"] = pod["spec"]["containers"][:-3]
    decision = decide_mutation(request(pod), SHOP, CONFIG)
    assert decision.reason == "bad-request", decision  # at the cap: read, and its junk named
