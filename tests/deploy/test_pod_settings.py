"""The chart's pod-level values for both Deployments: priority class, zone spread,
security contexts and extra volumes."""

from __future__ import annotations

from typing import Any

import helm_python
import pytest

from deploy import render
from tests.deploy.chart_support import (
    VALUE_SETS,
    assert_restricted,
    find,
    kinds,
    rendered,
    rendered_hooks,
    validate_strict,
)

COMPONENTS = {"webhook": "sidecred", "broker": "sidecred-broker"}


def _pod(objects: list[dict[str, Any]], component: str) -> dict[str, Any]:
    return find(objects, "Deployment", COMPONENTS[component])["spec"]["template"]["spec"]


def _selector(objects: list[dict[str, Any]], component: str) -> dict[str, str]:
    return find(objects, "Deployment", COMPONENTS[component])["spec"]["selector"]["matchLabels"]


def _hook_pods(name: str) -> list[dict[str, Any]]:
    """The pod specs of the `helm test` pod and the uninstall Job."""
    (job,) = [h for h in rendered_hooks(name, "pre-delete") if h["kind"] == "Job"]
    return [h["spec"] for h in rendered_hooks(name)] + [job["spec"]["template"]["spec"]]


def test_default_priority_class_is_the_charts_own_not_a_system_class() -> None:
    """GKE (and any cluster whose ResourceQuota limits them) refuses system-* priority
    classes outside kube-system, so a default of system-cluster-critical would leave the
    webhook unscheduled there; the chart's own class is accepted everywhere."""
    for name in ("defaults", "broker"):
        objects = rendered(name)
        priority = find(objects, "PriorityClass")
        validate_strict(priority)
        assert priority["metadata"]["name"] == "sidecred"
        assert 0 < priority["value"] <= 1_000_000_000 and priority["globalDefault"] is False
        components = ["webhook", "broker"] if name == "broker" else ["webhook"]
        for component in components:
            assert _pod(objects, component)["priorityClassName"] == "sidecred"
    for name in VALUE_SETS:
        for obj in rendered(name):
            if obj["kind"] == "Deployment":
                class_name = obj["spec"]["template"]["spec"].get("priorityClassName", "")
                assert not class_name.startswith("system-"), (name, class_name)


def test_named_priority_class_replaces_the_charts_and_none_is_possible() -> None:
    objects = rendered("openshift-extra-volumes")
    assert _pod(objects, "broker")["priorityClassName"] == "platform-critical"
    assert _pod(objects, "webhook")["priorityClassName"] == "sidecred"
    bare = rendered("pull-secrets-and-scheduling")
    assert "PriorityClass" not in kinds(bare)
    assert "priorityClassName" not in _pod(bare, "webhook")
    gke_refused = render.render_objects({"priorityClassName": "system-cluster-critical"})
    assert _pod(gke_refused, "webhook")["priorityClassName"] == "system-cluster-critical"


def test_replicas_spread_over_zones_by_default() -> None:
    objects = rendered("broker")
    for component in COMPONENTS:
        (constraint,) = _pod(objects, component)["topologySpreadConstraints"]
        assert constraint == {
            "maxSkew": 1,
            "topologyKey": "topology.kubernetes.io/zone",
            # A soft rule: nodes without a zone label, or one zone, still take every replica.
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": _selector(objects, component)},
        }


def test_a_constraint_without_selector_selects_its_own_components_pods() -> None:
    """The broker inherits nothing from the webhook's constraints, and a constraint given
    without labelSelector counts the component's own pods (it would count none)."""
    objects = rendered("openshift-extra-volumes")
    (webhook,) = _pod(objects, "webhook")["topologySpreadConstraints"]
    assert webhook["topologyKey"] == "kubernetes.io/hostname"
    assert webhook["labelSelector"] == {"matchLabels": _selector(objects, "webhook")}
    (broker,) = _pod(objects, "broker")["topologySpreadConstraints"]
    assert broker["topologyKey"] == "topology.kubernetes.io/zone"
    given = VALUE_SETS["pull-secrets-and-scheduling"]["topologySpreadConstraints"]
    assert (
        _pod(rendered("pull-secrets-and-scheduling"), "webhook")["topologySpreadConstraints"]
        == given
    )


def test_default_security_contexts_are_restricted_everywhere() -> None:
    objects = rendered("broker")
    pods = [_pod(objects, c) for c in COMPONENTS] + _hook_pods("broker")
    for pod in pods:
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 65532
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in pod["containers"]:
            assert_restricted(container)


def test_null_removes_a_security_key_and_the_broker_merges_its_own() -> None:
    """OpenShift's restricted SCC assigns UID and GID itself and refuses pods that name
    others: with the keys set to null they are gone, everything else stays restricted."""
    objects = rendered("openshift-extra-volumes")
    pods = [_pod(objects, c) for c in COMPONENTS]
    pods += _hook_pods("openshift-extra-volumes")
    for pod in pods:
        assert pod["securityContext"] == {
            "runAsNonRoot": True,
            "seccompProfile": {"type": "RuntimeDefault"},
        }
        for container in pod["containers"]:
            context = container["securityContext"]
            assert "runAsUser" not in context and "runAsGroup" not in context
            assert context["runAsNonRoot"] is True and context["readOnlyRootFilesystem"] is True
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"] == {"drop": ["ALL"]}
    (webhook,) = _pod(objects, "webhook")["containers"]
    (broker,) = _pod(objects, "broker")["containers"]
    assert "privileged" not in webhook["securityContext"]
    assert broker["securityContext"]["privileged"] is False


@pytest.mark.parametrize("component", sorted(COMPONENTS))
def test_extra_volumes_are_added_beside_the_charts_own(component: str) -> None:
    values = VALUE_SETS["openshift-extra-volumes"]
    own = values["broker"] if component == "broker" else values
    objects = rendered("openshift-extra-volumes")
    pod = _pod(objects, component)
    (container,) = pod["containers"]
    names = [v["name"] for v in pod["volumes"]]
    assert names[-1:] == [own["extraVolumes"][0]["name"]] and "tls" in names and "tmp" in names
    assert pod["volumes"][-1] == own["extraVolumes"][0]
    assert container["volumeMounts"][-1] == own["extraVolumeMounts"][0]
    mounts = [m["mountPath"] for m in container["volumeMounts"]]
    assert "/etc/sidecred/tls" in mounts and "/tmp" in mounts
    validate_strict(find(objects, "Deployment", COMPONENTS[component]))


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"priorityClass": {"create": True, "value": 2_000_000_000}}, "value"),
        ({"extraVolumeMounts": [{"name": "ca"}]}, "mountPath"),
        ({"extraVolumes": [{"configMap": {"name": "ca"}}]}, "name"),
        ({"broker": {"podSecurityContext": "restricted"}}, "podSecurityContext"),
    ],
    ids=[
        "priority-over-user-range",
        "mount-without-path",
        "volume-without-name",
        "context-not-object",
    ],
)
def test_bad_pod_values_fail_naming_the_value(values: dict[str, Any], expected: str) -> None:
    with pytest.raises(helm_python.HelmError) as caught:
        render.render_documents(values)
    assert expected in str(caught.value)
