"""Reinvocation, token handling and junk input against the pure decisions."""

from __future__ import annotations

import copy
import itertools
import json
from typing import Any

import pytest

from sidecred.pods.settings import Settings
from sidecred.webhook.decide import decide_mutation, decide_validation, namespace_to_lookup
from sidecred.webhook.mutate import apply_patch
from tests.webhook.fixture_cases import BASE_ROLE_ARN, pod_request

CONFIG = Settings(base_role_arn=BASE_ROLE_ARN)
NAMESPACE = {
    "metadata": {"name": "shop", "annotations": {"iam.amazonaws.com/allowed-roles": '["*"]'}}
}


def pod(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": "web-",
            "namespace": "shop",
            "annotations": {"iam.amazonaws.com/role": "web"},
        },
        "spec": {"containers": [{"name": "web", "image": "nginx"}], **spec},
    }


def env_of(obj: dict[str, Any], name: str) -> dict[str, Any]:
    for list_name in ("initContainers", "containers"):
        for container in obj["spec"].get(list_name) or []:
            if container["name"] == name:
                return {e["name"]: e.get("value") for e in container.get("env") or []}
    raise KeyError(name)


def injected(
    obj: dict[str, Any],
    config: Settings = CONFIG,
    token: str = "t1",  # noqa: S107
) -> dict[str, Any]:
    decision = decide_mutation(pod_request(obj), NAMESPACE, config, new_token=lambda: token)
    assert decision.allowed and decision.patch, decision
    return apply_patch(obj, decision.patch)


def test_container_added_by_a_later_webhook_gets_only_env() -> None:
    first = injected(pod())
    later = copy.deepcopy(first)
    later["spec"]["containers"].append({"name": "daprd", "image": "daprio/daprd:1.13"})
    decision = decide_mutation(pod_request(later), NAMESPACE, CONFIG, new_token=lambda: "t2")
    assert decision.allowed and decision.reason == "env-added"
    assert decision.patch is not None
    assert {op["path"] for op in decision.patch} == {
        "/spec/containers/1/env",
        "/spec/containers/1/volumeMounts",
    }
    result = apply_patch(later, decision.patch)
    assert (
        env_of(result, "daprd")["AWS_CONTAINER_CREDENTIALS_FULL_URI"]
        == "http://127.0.0.1:61080/v1/credentials"
    )
    assert decide_mutation(pod_request(result), NAMESPACE, CONFIG).patch is None


def test_env_mode_reuses_the_pods_token() -> None:
    config = Settings(base_role_arn=BASE_ROLE_ARN, token_mode="env")
    first = injected(pod(), config, token="first-token")
    assert env_of(first, "sidecred")["SIDECRED_AUTH_TOKEN"] == "first-token"
    first["spec"]["containers"].append({"name": "late", "image": "busybox"})
    decision = decide_mutation(
        pod_request(first), NAMESPACE, config, new_token=lambda: "second-token"
    )
    result = apply_patch(first, decision.patch or [])
    assert env_of(result, "late")["AWS_CONTAINER_AUTHORIZATION_TOKEN"] == "first-token"
    assert "second-token" not in json.dumps(result)


def test_default_tokens_differ_per_pod_and_are_url_safe() -> None:
    config = Settings(base_role_arn=BASE_ROLE_ARN, token_mode="env")
    tokens = set()
    for _ in range(3):
        decision = decide_mutation(pod_request(pod()), NAMESPACE, config)
        result = apply_patch(pod(), decision.patch or [])
        tokens.add(env_of(result, "sidecred")["SIDECRED_AUTH_TOKEN"])
    assert len(tokens) == 3
    for token in tokens:
        assert len(token) >= 43 and all(c.isalnum() or c in "-_" for c in token)


def test_port_changes_follow_config() -> None:
    config = Settings(base_role_arn=BASE_ROLE_ARN, sidecar_port=9911, health_port=9912)
    result = injected(pod(), config)
    assert (
        env_of(result, "web")["AWS_CONTAINER_CREDENTIALS_FULL_URI"]
        == "http://127.0.0.1:9911/v1/credentials"
    )
    assert env_of(result, "sidecred")["SIDECRED_HEALTH_PORT"] == "9912"
    assert decide_validation(pod_request(result), NAMESPACE, config).allowed


def test_namespace_to_lookup() -> None:
    assert namespace_to_lookup(pod_request(pod(), namespace="shop"), CONFIG) == "shop"
    # An object namespace that is not the request's is refused by the decision, unread.
    assert namespace_to_lookup(pod_request(pod(), namespace="from-request"), CONFIG) is None
    for impossible in ("x" * 64, "Shop", "shop_1", "-shop", "shop.example", "a" * 60_000):
        odd = pod()
        odd["metadata"]["namespace"] = impossible
        assert namespace_to_lookup(pod_request(odd), CONFIG) is None, impossible
    no_ns = pod()
    del no_ns["metadata"]["namespace"]
    assert (
        namespace_to_lookup(pod_request(no_ns, namespace="from-request"), CONFIG) == "from-request"
    )
    plain = pod()
    plain["metadata"]["annotations"] = {}
    assert namespace_to_lookup(pod_request(plain), CONFIG) is None
    assert namespace_to_lookup(pod_request(pod()), Settings(namespace_policy="off")) is None
    assert (
        namespace_to_lookup(pod_request(pod(), operation="UPDATE", old_pod=pod()), CONFIG) is None
    )
    assert namespace_to_lookup(pod_request(pod(), sub_resource="status"), CONFIG) is None


JUNK_OBJECTS = [
    {"metadata": "x"},
    {"metadata": {"annotations": {"iam.amazonaws.com/role": 5}}},
    {"metadata": {"annotations": ["iam.amazonaws.com/role"]}},
    {"metadata": {"annotations": {"iam.amazonaws.com/role": "web"}}, "spec": []},
    {"metadata": {"annotations": {"iam.amazonaws.com/role": "web"}}, "spec": {"containers": {}}},
    {"metadata": {"annotations": {"iam.amazonaws.com/role": "web"}}, "spec": {"containers": [{}]}},
    {
        "metadata": {"annotations": {"iam.amazonaws.com/role": "web"}},
        "spec": {"containers": [{"name": "a", "env": [1]}]},
    },
    {
        "metadata": {"annotations": {"iam.amazonaws.com/role": "web"}},
        "spec": {"containers": [{"name": "a", "command": "sidecred"}]},
    },
    {"metadata": {"annotations": {"iam.amazonaws.com/role": "web"}}, "spec": {"volumes": [None]}},
]


@pytest.mark.parametrize(
    ("obj", "decide"),
    list(itertools.product(JUNK_OBJECTS, ["mutate", "validate"])),
    ids=[
        f"{d}-{i}" for i, d in itertools.product(range(len(JUNK_OBJECTS)), ["mutate", "validate"])
    ],
)
def test_junk_objects_get_a_clear_400(obj: dict[str, Any], decide: str) -> None:
    request = pod_request({"apiVersion": "v1", "kind": "Pod", **obj}, namespace="shop")
    namespace_to_lookup(request, CONFIG)  # the edge calls this first; it must not raise
    if decide == "mutate":
        decision = decide_mutation(request, NAMESPACE, CONFIG)
    else:
        decision = decide_validation(request, NAMESPACE, CONFIG)
    assert not decision.allowed and decision.code == 400 and decision.reason == "bad-request"
    assert decision.message.startswith("sidecred: request.object is not")
