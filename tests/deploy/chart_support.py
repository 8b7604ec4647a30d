"""Shared helpers for the deploy tests: renders of the chart and object lookup."""

from __future__ import annotations

import functools
import json
from typing import Any

import kubernetes_validate

from deploy import render

# cert-manager's kinds have no schema in kubernetes-validate; tests check the
# fields the chart relies on instead.
CERT_MANAGER_KINDS = frozenset({"Issuer", "Certificate"})

CA_BUNDLE = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUJJakFOQmdrcWhraUc5dzBCQVFFRkFBT0NBUThBTUlJQkNnS0NBUUVB"

# Named value sets the tests render with; "defaults" is deploy/sidecred.yaml.
VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "existing-secret": {
        "tls": {
            "certManager": {"enabled": False},
            "existingSecret": "sidecred-serving",
            "caBundle": CA_BUNDLE,
        }
    },
    "assume-role-env-token": {
        "credentialSource": "assume-role",
        "tokenMode": "env",
        "sidecarMode": "container",
        "region": "eu-west-1",
        "baseRoleArn": "arn:aws:iam::111122223333:role/",
        "sessionDuration": 7200,
        "sidecarImage": "registry.example.com/sidecred:pinned",
    },
    "custom-annotation-key": {
        "annotationKey": "example.com/aws-role",
        "namespace": {"create": False},
        "excludedNamespaces": ["monitoring", "kube-system"],
        "replicas": 3,
    },
    "opt-in-labels": {"namespaceLabels": {"sidecred.dev/enabled": "true"}},
}


@functools.cache
def _rendered_json(name: str) -> str:
    # Cached as JSON text so every caller gets its own fresh copy to inspect.
    return json.dumps(render.render_objects(VALUE_SETS[name]))


def rendered(name: str) -> list[dict[str, Any]]:
    """The chart's objects rendered with the named value set."""
    return json.loads(_rendered_json(name))


def find(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    """The one object of `kind` (and `name`, if given); fails when not exactly one."""
    matches = [
        obj
        for obj in objects
        if obj["kind"] == kind and (name is None or obj["metadata"]["name"] == name)
    ]
    assert len(matches) == 1, f"expected one {kind} {name or ''}, found {len(matches)}"
    return matches[0]


def kinds(objects: list[dict[str, Any]]) -> list[str]:
    return [obj["kind"] for obj in objects]


def validate_strict(obj: dict[str, Any]) -> None:
    """Validate against the newest Kubernetes schema kubernetes-validate ships, strictly
    (unknown fields are errors)."""
    kubernetes_validate.validate(obj, kubernetes_validate.latest_version(), strict=True)
