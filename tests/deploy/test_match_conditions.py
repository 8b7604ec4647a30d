"""The webhook configurations' CEL matchConditions, evaluated with cel-python.

The API server evaluates these before calling sidecred; with failurePolicy Fail
they decide which pods an outage can block, and which requests the validator
sees at all. The expressions come from the rendered chart, not from a copy.
"""

from __future__ import annotations

from typing import Any

import celpy
import pytest

from tests.deploy.chart_support import find, rendered

ROLE = "arn:aws:iam::111122223333:role/shop-reader"


def _expression(value_set: str, kind: str) -> str:
    (hook,) = find(rendered(value_set), kind)["webhooks"]
    (condition,) = hook["matchConditions"]
    return condition["expression"]


def _pod(annotations: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": "app", "namespace": "shop"}
    if annotations is not None:
        metadata["annotations"] = annotations
    containers = spec.pop("containers", [{"name": "app", "image": "app:1"}])
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": {"containers": containers, **spec},
    }


def _matches(
    expression: str,
    obj: dict[str, Any],
    old: dict[str, Any] | None = None,
    *,
    operation: str = "CREATE",
    sub_resource: str = "",
) -> bool:
    """Evaluate as the API server does: `object`, `oldObject` (null on CREATE) and
    `request`, whose subResource is the empty string for the pod itself."""
    env = celpy.Environment()
    program = env.program(env.compile(expression))
    activation = {
        "object": celpy.json_to_cel(obj),
        "oldObject": celpy.json_to_cel(old),
        "request": celpy.json_to_cel(
            {
                "operation": operation,
                "subResource": sub_resource,
                "namespace": "shop",
                "resource": {"group": "", "version": "v1", "resource": "pods"},
            }
        ),
    }
    result = program.evaluate(activation)
    # An evaluation error would make the API server apply failurePolicy (Fail).
    assert isinstance(result, celpy.celtypes.BoolType), f"not a bool: {result!r}"
    return bool(result)


MUTATE_CASES = [
    ("no-annotations", _pod(None), False),
    ("empty-annotations", _pod({}), False),
    (
        "other-annotations",
        _pod({"prometheus.io/scrape": "true", "iam.amazonaws.com/x": "y"}),
        False,
    ),
    ("role-annotation", _pod({"iam.amazonaws.com/role": ROLE}), True),
    ("role-annotation-among-others", _pod({"a": "b", "iam.amazonaws.com/role": "reader"}), True),
    ("injected-only", _pod({"sidecred.dev/injected": ROLE}), False),
]


@pytest.mark.parametrize(
    ("pod", "expected"), [c[1:] for c in MUTATE_CASES], ids=[c[0] for c in MUTATE_CASES]
)
def test_mutating_webhook_sees_only_pods_with_the_role_annotation(
    pod: dict, expected: bool
) -> None:
    expression = _expression("defaults", "MutatingWebhookConfiguration")
    assert _matches(expression, pod) is expected


def test_custom_annotation_key_moves_the_mutating_match() -> None:
    expression = _expression("custom-annotation-key", "MutatingWebhookConfiguration")
    assert _matches(expression, _pod({"example.com/aws-role": ROLE})) is True
    assert _matches(expression, _pod({"iam.amazonaws.com/role": ROLE})) is False
    assert _matches(expression, _pod(None)) is False


FORGED_CONTAINER = [{"name": "sidecred", "image": "evil:1", "command": ["sidecred", "sidecar"]}]

VALIDATE_CASES = [
    # (id, object, oldObject, operation, subResource, expected)
    ("create-unannotated", _pod(None), None, "CREATE", "", False),
    ("create-other-annotations", _pod({"team": "shop"}), None, "CREATE", "", False),
    ("create-annotated", _pod({"iam.amazonaws.com/role": ROLE}), None, "CREATE", "", True),
    ("create-injected-only", _pod({"sidecred.dev/injected": ROLE}), None, "CREATE", "", True),
    (
        "create-forged-native-sidecar",
        _pod(None, initContainers=FORGED_CONTAINER),
        None,
        "CREATE",
        "",
        True,
    ),
    ("create-forged-sidecar", _pod(None, containers=FORGED_CONTAINER), None, "CREATE", "", True),
    (
        "update-unannotated",
        _pod({"team": "shop"}),
        _pod({"team": "shop"}),
        "UPDATE",
        "",
        False,
    ),
    (
        "update-annotated",
        _pod({"iam.amazonaws.com/role": ROLE}),
        _pod({"iam.amazonaws.com/role": ROLE}),
        "UPDATE",
        "",
        True,
    ),
    (
        "update-removes-role-annotation",
        _pod({"team": "shop"}),
        _pod({"iam.amazonaws.com/role": ROLE}),
        "UPDATE",
        "",
        True,
    ),
    (
        "update-removes-all-annotations",
        _pod(None),
        _pod({"iam.amazonaws.com/role": ROLE, "sidecred.dev/injected": ROLE}),
        "UPDATE",
        "",
        True,
    ),
    (
        "update-removes-injected-annotation",
        _pod({}),
        _pod({"sidecred.dev/injected": ROLE}),
        "UPDATE",
        "",
        True,
    ),
    (
        "update-adds-role-annotation",
        _pod({"iam.amazonaws.com/role": ROLE}),
        _pod(None),
        "UPDATE",
        "",
        True,
    ),
    (
        "ephemeral-container-unannotated-pod",
        _pod(None, ephemeralContainers=[{"name": "debug", "image": "busybox"}]),
        _pod(None),
        "UPDATE",
        "ephemeralcontainers",
        True,
    ),
    (
        "ephemeral-container-injected-pod",
        _pod(
            {"sidecred.dev/injected": ROLE},
            ephemeralContainers=[
                {"name": "debug", "image": "busybox", "targetContainerName": "sidecred"}
            ],
        ),
        _pod({"sidecred.dev/injected": ROLE}),
        "UPDATE",
        "ephemeralcontainers",
        True,
    ),
]


@pytest.mark.parametrize(
    ("obj", "old", "operation", "sub_resource", "expected"),
    [c[1:] for c in VALIDATE_CASES],
    ids=[c[0] for c in VALIDATE_CASES],
)
def test_validating_webhook_sees_every_request_that_touches_sidecred(
    obj: dict, old: dict | None, operation: str, sub_resource: str, expected: bool
) -> None:
    expression = _expression("defaults", "ValidatingWebhookConfiguration")
    assert (
        _matches(expression, obj, old, operation=operation, sub_resource=sub_resource) is expected
    )


def test_custom_annotation_key_moves_the_validating_match() -> None:
    expression = _expression("custom-annotation-key", "ValidatingWebhookConfiguration")
    custom = {"example.com/aws-role": ROLE}
    assert _matches(expression, _pod(custom)) is True
    assert _matches(expression, _pod({}), _pod(custom), operation="UPDATE") is True
    assert _matches(expression, _pod({"iam.amazonaws.com/role": ROLE})) is False
    # The injected bookkeeping annotation does not depend on the role key.
    assert _matches(expression, _pod({"sidecred.dev/injected": ROLE})) is True
