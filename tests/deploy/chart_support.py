"""Shared helpers for the deploy tests: renders of the chart and object lookup."""

from __future__ import annotations

import functools
import json
from typing import Any

import kubernetes_validate

from deploy import render

# cert-manager's and the Prometheus Operator's kinds have no schema in
# kubernetes-validate; tests check the fields the chart relies on instead.
CERT_MANAGER_KINDS = frozenset({"Issuer", "Certificate"})
CUSTOM_KINDS = CERT_MANAGER_KINDS | {"ServiceMonitor", "PrometheusRule"}

CA_BUNDLE = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUJJakFOQmdrcWhraUc5dzBCQVFFRkFBT0NBUThBTUlJQkNnS0NBUUVB"

DIGEST = "sha256:" + "5e" * 32

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
    "replicas-1": {"replicas": 1},
    "digests": {
        "image": {"repository": "registry.corp/sidecred", "digest": DIGEST, "pullPolicy": "Always"},
        "sidecar": {"image": {"repository": "registry.corp/platform/credproxy", "digest": DIGEST}},
    },
    "pull-secrets-and-scheduling": {
        "imagePullSecrets": [{"name": "registry-credentials"}],
        "sidecar": {"imagePullSecrets": ["registry-credentials", "registry-mirror"]},
        "priorityClassName": "",
        "priorityClass": {"create": False, "value": 1000000},
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ops"}],
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": {"app.kubernetes.io/component": "webhook"}},
            }
        ],
        "podAnnotations": {"example.com/team": "platform"},
        "podLabels": {"example.com/tier": "system"},
        "extraArgs": ["--log-level", "debug"],
        "extraEnv": [{"name": "TZ", "value": "UTC"}],
        "global": {"imageRegistry": "ignored.example"},
    },
    "env-token-container-mode": {
        "sidecar": {
            "mode": "container",
            "tokenMode": "env",
            "drainSeconds": 30,
            "image": {"repository": "registry.example.com/sidecred", "tag": "pinned"},
        },
        "region": "eu-west-1",
        "baseRoleArn": "arn:aws:iam::111122223333:role/",
        "sessionDuration": 7200,
    },
    # The values of the committed example deploy/examples/sidecred-broker.yaml.
    "broker": render.BROKER_EXAMPLE_VALUES,
    "broker-existing-secrets": {
        "credentialSource": "broker",
        "tls": {
            "certManager": {"enabled": False},
            "existingSecret": "sidecred-serving",
            "caBundle": CA_BUNDLE,
        },
        "broker": {
            "replicas": 3,
            "awsCredentialsSecret": "broker-aws",
            "tls": {"existingSecret": "broker-serving"},
        },
    },
    # Denials that show the policy, where only the API server (and Prometheus) may ask.
    "explain-denials": {
        "explainDenials": True,
        "requestBodyBudgetMiB": 96,
        "networkPolicy": {
            "enabled": True,
            "apiServerCIDRs": ["10.0.0.0/24", "10.0.1.0/24"],
            "webhookSources": [
                {
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": "monitoring"}
                    }
                }
            ],
        },
    },
    "monitoring-networkpolicy": {
        "credentialSource": "broker",
        "metrics": {
            "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
            "prometheusRule": {"enabled": True, "labels": {"release": "prometheus"}},
            "dashboard": {"enabled": True},
        },
        "networkPolicy": {"enabled": True},
    },
    "custom-annotation-key": {
        "annotationKey": "example.com/aws-role",
        "excludedNamespaces": ["monitoring", "kube-system"],
        "replicas": 3,
    },
    "opt-in-labels": {"namespaceLabels": {"sidecred.dev/enabled": "true"}},
    # No pod events: neither component posts any, and neither is granted what they need.
    "events-off": {"credentialSource": "broker", "events": {"enabled": False}},
    # OpenShift assigns the user: the UID and GID keys removed with null, a CA bundle
    # mounted into both components, the broker on its own priority class.
    "openshift-extra-volumes": {
        "credentialSource": "broker",
        "podSecurityContext": {"runAsUser": None, "runAsGroup": None, "fsGroup": None},
        "containerSecurityContext": {"runAsUser": None, "runAsGroup": None},
        "extraVolumes": [{"name": "corp-ca", "configMap": {"name": "corp-ca-bundle"}}],
        "extraVolumeMounts": [{"name": "corp-ca", "mountPath": "/etc/corp-ca", "readOnly": True}],
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "DoNotSchedule",
            }
        ],
        "broker": {
            "priorityClassName": "platform-critical",
            "containerSecurityContext": {"readOnlyRootFilesystem": True, "privileged": False},
            "extraVolumes": [{"name": "proxy-ca", "secret": {"secretName": "proxy-ca"}}],
            "extraVolumeMounts": [{"name": "proxy-ca", "mountPath": "/etc/proxy-ca"}],
        },
    },
}


@functools.cache
def _rendered_json(name: str) -> str:
    # Cached as JSON text so every caller gets its own fresh copy to inspect.
    return json.dumps(render.render_objects(VALUE_SETS[name]))


def rendered(name: str) -> list[dict[str, Any]]:
    """The chart's objects rendered with the named value set."""
    return json.loads(_rendered_json(name))


@functools.cache
def _hooks_json(name: str) -> str:
    return json.dumps(render.render_objects(VALUE_SETS[name], hooks=True))


def rendered_hooks(name: str, event: str | None = "test") -> list[dict[str, Any]]:
    """The chart's Helm hooks for `event` (`test`: the `helm test` pod; `pre-delete`: the
    uninstall Job and its RBAC; None: all) rendered with the named value set."""
    hooks = json.loads(_hooks_json(name))
    return [
        h for h in hooks if event is None or h["metadata"]["annotations"]["helm.sh/hook"] == event
    ]


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


def assert_restricted(container: dict[str, Any]) -> None:
    """Pod Security "restricted" for a container, with requests and limits."""
    context = container["securityContext"]
    assert context["runAsNonRoot"] is True and context["runAsUser"] == 65532
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert "limits" in container["resources"] and "requests" in container["resources"]
