"""Which requests the rendered chart sends to sidecred, decided as the API server decides.

With failurePolicy Fail a matchCondition that errors refuses the request, so
every condition must be total: no error on any request. The requests are built
as the API server builds them (omitempty fields absent: a pod CREATE has no
`subResource` key, a generateName pod no `name`), and the conditions come from
the chart's render, not from a copy.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

import pytest

from deploy import render
from tests.deploy import admission_catalogue as cat
from tests.deploy.chart_support import VALUE_SETS, find, rendered
from tests.deploy.webhook_selection import (
    CALLED,
    NOT_SENT,
    SKIPPED,
    configuration_outcome,
    evaluate,
)
from tests.webhook.fixture_cases import fixture_paths, load_case, request_of

pytestmark = pytest.mark.slow

MUTATING, VALIDATING = "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"
ROLE_KEY = "iam.amazonaws.com/role"
INJECTED_KEY = "sidecred.dev/injected"
CONTAINER_ROLES_KEY = "sidecred.dev/container-roles"

# (id, request, mutating outcome, validating outcome) with the default values.
CATALOGUE: list[tuple[str, dict[str, Any], str, str]] = [
    # Ordinary pods: neither webhook is called, so an outage blocks none of them.
    ("deployment-pod", cat.pod_request(cat.DEPLOYMENT_POD), SKIPPED, SKIPPED),
    ("statefulset-pod", cat.pod_request(cat.STATEFUL_POD), SKIPPED, SKIPPED),
    ("daemonset-pod", cat.pod_request(cat.DAEMON_POD), SKIPPED, SKIPPED),
    ("job-pod", cat.pod_request(cat.JOB_POD), SKIPPED, SKIPPED),
    ("bare-pod", cat.pod_request(cat.BARE_POD, user_info=cat.DEVELOPER), SKIPPED, SKIPPED),
    (
        "pod-other-annotations",
        cat.pod_request(cat.annotated(cat.DEPLOYMENT_POD, team="shop")),
        SKIPPED,
        SKIPPED,
    ),
    ("pod-dry-run", cat.pod_request(cat.DEPLOYMENT_POD, dry_run=True), SKIPPED, SKIPPED),
    ("pod-update", cat.updated(cat.STATEFUL_POD), NOT_SENT, SKIPPED),
    (
        "pod-status-by-kubelet",
        cat.updated(cat.INJECTED_POD, sub_resource="status", user_info=cat.KUBELET),
        NOT_SENT,
        NOT_SENT,
    ),
    (
        "pod-delete",
        cat.pod_request(None, operation="DELETE", old_pod=cat.BARE_POD),
        NOT_SENT,
        NOT_SENT,
    ),
    # sidecred's pods.
    ("annotated-pod", cat.pod_request(cat.ANNOTATED_POD), CALLED, CALLED),
    (
        "injected-only-annotation",
        cat.pod_request(cat.annotated(cat.DEPLOYMENT_POD, **{INJECTED_KEY: cat.ROLE})),
        SKIPPED,
        CALLED,
    ),
    # A role for some containers only (sidecred.dev/container-roles): both webhooks, so the
    # sidecar is injected and each container's role meets the policy.
    (
        "container-roles-only-pod",
        cat.pod_request(cat.annotated(cat.DEPLOYMENT_POD, **{CONTAINER_ROLES_KEY: '{"app": "x"}'})),
        CALLED,
        CALLED,
    ),
    (
        "update-changes-container-roles",
        cat.updated(
            cat.annotated(cat.INJECTED_POD, **{CONTAINER_ROLES_KEY: '{"app": "x"}'}),
            cat.annotated(cat.INJECTED_POD, **{CONTAINER_ROLES_KEY: '{"app": "admin"}'}),
        ),
        NOT_SENT,
        CALLED,
    ),
    ("injected-pod-update", cat.updated(cat.INJECTED_POD), NOT_SENT, CALLED),
    (
        "update-removes-annotations",
        cat.updated(cat.INJECTED_POD, cat.annotated(cat.INJECTED_POD)),
        NOT_SENT,
        CALLED,
    ),
    (
        "update-removes-injected-label",
        cat.updated(cat.INJECTED_POD, cat.labelled(cat.INJECTED_POD, app="db")),
        NOT_SENT,
        CALLED,
    ),
    (
        "update-adds-role",
        cat.updated(cat.STATEFUL_POD, cat.annotated(cat.STATEFUL_POD, **{ROLE_KEY: cat.ROLE})),
        NOT_SENT,
        CALLED,
    ),
    (
        "forged-native-sidecar",
        cat.pod_request(cat.with_spec(cat.BARE_POD, initContainers=[cat.FORGED_SIDECAR])),
        SKIPPED,
        CALLED,
    ),
    (
        "forged-sidecar-container",
        cat.pod_request(
            cat.with_spec(
                cat.BARE_POD, containers=[{"name": "app", "image": "a"}, cat.FORGED_SIDECAR]
            )
        ),
        SKIPPED,
        CALLED,
    ),
    ("debug-injected-pod", cat.debug(cat.INJECTED_POD, "sidecred"), NOT_SENT, CALLED),
    # A view of the sidecar's token (SECURITY.md path 6): every request the webhook must
    # judge reaches it, and ordinary pods that share processes are left alone.
    ("debug-injected-pod-no-target", cat.debug(cat.INJECTED_POD), NOT_SENT, CALLED),
    (
        "debug-injected-pod-privileged",
        cat.debug(cat.INJECTED_POD, "app", securityContext={"privileged": True}),
        NOT_SENT,
        CALLED,
    ),
    (
        "debug-injected-pod-mounts-host-path",
        cat.debug(
            cat.with_spec(
                cat.INJECTED_POD,
                volumes=[{"name": "k", "hostPath": {"path": "/var/lib/kubelet"}}],
            ),
            volumeMounts=[{"name": "k", "mountPath": "/k"}],
        ),
        NOT_SENT,
        CALLED,
    ),
    *[
        (
            f"annotated-pod-{flag}",
            cat.pod_request(cat.with_spec(cat.ANNOTATED_POD, **{flag: True})),
            CALLED,
            CALLED,
        )
        for flag in ("shareProcessNamespace", "hostPID", "hostIPC")
    ],
    # The webhook under siege (SECURITY.md, "Budgets"): a huge annotated pod reaches
    # both webhooks, which refuse it by its container count before reading it.
    (
        "annotated-pod-with-300-containers",
        cat.pod_request(
            cat.with_spec(
                cat.ANNOTATED_POD,
                containers=[{"name": f"c{i}", "image": "app:1"} for i in range(300)],
            )
        ),
        CALLED,
        CALLED,
    ),
    (
        "ordinary-pod-sharing-processes",
        cat.pod_request(
            cat.with_spec(cat.DEPLOYMENT_POD, shareProcessNamespace=True, hostIPC=True)
        ),
        SKIPPED,
        SKIPPED,
    ),
    ("debug-ordinary-pod", cat.debug(cat.STATEFUL_POD, "app"), NOT_SENT, SKIPPED),
    # The webhook's own namespace and kube-system are never sent.
    (
        "annotated-pod-in-kube-system",
        cat.pod_request(cat.ANNOTATED_POD, namespace="kube-system"),
        NOT_SENT,
        NOT_SENT,
    ),
    (
        "annotated-pod-in-release-namespace",
        cat.pod_request(cat.ANNOTATED_POD, namespace="sidecred"),
        NOT_SENT,
        NOT_SENT,
    ),
    # kubectl exec / attach: only into the sidecar.
    ("exec-sidecar", cat.connect("exec", "sidecred"), NOT_SENT, CALLED),
    ("exec-app", cat.connect("exec", "app"), NOT_SENT, SKIPPED),
    ("exec-no-container", cat.connect("exec", None), NOT_SENT, SKIPPED),
    ("attach-sidecar", cat.connect("attach", "sidecred"), NOT_SENT, CALLED),
    ("attach-app", cat.connect("attach", "app"), NOT_SENT, SKIPPED),
    # TokenRequests: only for a sidecred audience (the webhook tells the kubelet apart).
    ("token-sidecred-by-user", cat.token_request(["sidecred"], cat.DEVELOPER), NOT_SENT, CALLED),
    (
        "token-sidecred-by-kubelet",
        cat.token_request(["sidecred"], cat.KUBELET, "web-0"),
        NOT_SENT,
        CALLED,
    ),
    (
        "token-broker-audience-among-others",
        cat.token_request(["vault", "sidecred-broker"], cat.DEVELOPER),
        NOT_SENT,
        CALLED,
    ),
    ("token-audience-case", cat.token_request(["SideCred"], cat.DEVELOPER), NOT_SENT, CALLED),
    (
        "token-sts-by-kubelet",
        cat.token_request(["sts.amazonaws.com"], cat.KUBELET, "web-0"),
        NOT_SENT,
        SKIPPED,
    ),
    ("token-default-audience", cat.token_request(None, cat.DEVELOPER), NOT_SENT, SKIPPED),
    # Namespaces: only those carrying a role policy.
    (
        "namespace-create-permitted",
        cat.namespace_request("team-a", {"iam.amazonaws.com/permitted": ".*"}),
        NOT_SENT,
        CALLED,
    ),
    (
        "namespace-update-allowed-roles",
        cat.namespace_request("team-a", {"iam.amazonaws.com/allowed-roles": "[]"}, old={}),
        NOT_SENT,
        CALLED,
    ),
    ("namespace-create-plain", cat.namespace_request("team-b", None), NOT_SENT, SKIPPED),
    (
        "namespace-update-drops-policy",
        cat.namespace_request("team-a", {"team": "a"}, old={"iam.amazonaws.com/permitted": "x"}),
        NOT_SENT,
        SKIPPED,
    ),
    (
        "namespace-kube-system-policy",
        cat.namespace_request("kube-system", {"iam.amazonaws.com/permitted": ".*"}, old={}),
        NOT_SENT,
        NOT_SENT,
    ),
    # Unannotated pods carrying something of the sidecar's (forged sidecars, own tokens).
    *[
        (f"unannotated-{name}", cat.pod_request(pod), SKIPPED, CALLED)
        for name, pod in cat.FORGERIES.items()
    ],
    (
        "debug-container-with-sidecred-env",
        cat.debug(cat.STATEFUL_POD, "app", env=[{"name": "SIDECRED_ROLE_ARN", "value": "x"}]),
        NOT_SENT,
        CALLED,
    ),
    (
        "debug-container-mounting-sidecred-volume",
        cat.debug(
            cat.STATEFUL_POD, volumeMounts=[{"name": "sidecred-sa-token", "mountPath": "/t"}]
        ),
        NOT_SENT,
        CALLED,
    ),
    # Lookalikes that are not sidecred's.
    *[
        (f"lookalike-{name}", cat.pod_request(pod), SKIPPED, SKIPPED)
        for name, pod in cat.LOOKALIKES.items()
    ],
]


def _config(value_set: str, kind: str) -> dict[str, Any]:
    return find(rendered(value_set), kind)


@pytest.mark.parametrize(
    ("request_", "mutating", "validating"),
    [c[1:] for c in CATALOGUE],
    ids=[c[0] for c in CATALOGUE],
)
def test_default_chart_sends_exactly_sidecreds_requests(
    request_: dict[str, Any], mutating: str, validating: str
) -> None:
    assert configuration_outcome(_config("defaults", MUTATING), request_) == mutating
    assert configuration_outcome(_config("defaults", VALIDATING), request_) == validating


def test_requests_are_shaped_as_the_api_server_sends_them() -> None:
    """The case issue 9 is about: a pod CREATE has no subResource key at all."""
    create = cat.pod_request(cat.DEPLOYMENT_POD)
    assert "subResource" not in create and "requestSubResource" not in create
    assert "name" not in create  # generateName: the pod has no name yet
    assert create["oldObject"] is None and create["dryRun"] is False
    assert "uid" not in create["userInfo"] and "extra" not in create["userInfo"]
    assert cat.connect("exec", None)["subResource"] == "exec"
    assert "container" not in cat.connect("exec", None)["object"]
    assert cat.namespace_request("team-a", None)["namespace"] == "team-a"


def _conditions(value_set: str) -> list[tuple[str, str]]:
    return [
        (f"{kind}/{hook['name']}/{condition['name']}", condition["expression"])
        for kind in (MUTATING, VALIDATING)
        for hook in _config(value_set, kind)["webhooks"]
        for condition in hook.get("matchConditions") or []
    ]


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_no_condition_errors_on_any_request(value_set: str) -> None:
    """Total: every condition of the render evaluates to a bool on every request in
    the catalogue and every admission fixture, including requests its rules would
    never send it."""
    errors = [
        (where, value)
        for where, expression in _conditions(value_set)
        for value in [_first_error(expression)]
        if value is not None
    ]
    assert errors == []


@functools.cache
def _first_error(expression: str) -> tuple[str, str] | None:
    """(request id, error) of the first catalogue or fixture request on which the
    expression does not give a bool; value sets share most expressions."""
    requests = [(c[0], c[1]) for c in CATALOGUE if c[1].get("object") is not None]
    requests += [(path.stem, request_of(load_case(path))) for path in fixture_paths()]
    for request_id, request in requests:
        value = evaluate(expression, request)
        if not isinstance(value, bool):
            return request_id, value
    return None


def test_an_absent_key_is_an_error_the_harness_reports() -> None:
    """The harness sees what the API server sees: an unguarded optional field errs."""
    create = cat.pod_request(cat.DEPLOYMENT_POD)
    assert evaluate("request.subResource == 'ephemeralcontainers' || false", create).startswith(
        "error"
    )
    assert evaluate("has(oldObject.metadata)", create).startswith("error")
    assert evaluate("has(request.subResource)", create) is False


def test_custom_annotation_key_moves_both_matches() -> None:
    custom = cat.pod_request(
        cat.annotated(cat.DEPLOYMENT_POD, **{"example.com/aws-role": cat.ROLE})
    )
    default = cat.pod_request(cat.ANNOTATED_POD)
    for kind in (MUTATING, VALIDATING):
        config = _config("custom-annotation-key", kind)
        assert configuration_outcome(config, custom) == CALLED
        assert configuration_outcome(config, default) == SKIPPED
    removed = cat.updated(
        cat.annotated(cat.STATEFUL_POD, **{"example.com/aws-role": cat.ROLE}), cat.STATEFUL_POD
    )
    assert configuration_outcome(_config("custom-annotation-key", VALIDATING), removed) == CALLED


def test_opt_in_labels_send_only_labelled_namespaces() -> None:
    request = cat.pod_request(cat.ANNOTATED_POD)
    config = _config("opt-in-labels", MUTATING)
    assert configuration_outcome(config, request) == NOT_SENT
    labelled = {"shop": {"sidecred.dev/enabled": "true"}}
    assert configuration_outcome(config, request, labelled) == CALLED


def _values_for(case: dict[str, Any]) -> dict[str, Any]:
    """Chart values matching a fixture's webhook configuration, where it moves a condition."""
    names = {
        "annotation_key": "annotationKey",
        "token_audience": "tokenAudience",
        "broker_audience": "brokerAudience",
    }
    config = case.get("config") or {}
    values: dict[str, Any] = {v: config[k] for k, v in names.items() if k in config}
    if "sidecar_image" in config:
        repository = re.sub(r"(@.*|:[^/:]*)$", "", config["sidecar_image"])
        values["sidecar"] = {"image": {"repository": repository}}
    return values


@functools.cache
def _configs_json(values_json: str) -> str:
    objects = render.render_objects(json.loads(values_json))
    return json.dumps([find(objects, MUTATING), find(objects, VALIDATING)])


@pytest.mark.parametrize("path", fixture_paths(), ids=lambda p: p.stem)
def test_every_admission_fixture_reaches_the_webhook_it_needs(path: Path) -> None:
    """Every fixture in tests/webhook/fixtures (loaded at test time, so attack fixtures
    added later are covered): no condition errs on its request, and every request the
    webhook must refuse is sent to it by the rendered chart."""
    case = load_case(path)
    request = request_of(case)
    configs = json.loads(_configs_json(json.dumps(_values_for(case), sort_keys=True)))
    outcomes = [configuration_outcome(config, request) for config in configs]
    assert not [o for o in outcomes if o.startswith("error")], outcomes
    if case["expect"].get("allowed") is False:
        assert CALLED in outcomes, f"{path.name} is refused by sidecred but never sent: {outcomes}"


def test_a_custom_sidecar_image_is_matched_by_repository() -> None:
    image = {"repository": "Registry.Corp/platform/credproxy", "tag": "1.2"}
    objects = render.render_objects({"sidecar": {"image": image}})
    config = find(objects, VALIDATING)
    for image in (
        "registry.corp/platform/credproxy:9",
        "registry.corp/platform/credproxy@sha256:0",
    ):
        pod = cat.with_spec(cat.BARE_POD, containers=[{"name": "x", "image": image}])
        assert configuration_outcome(config, cat.pod_request(pod)) == CALLED, image
    other = cat.with_spec(
        cat.BARE_POD, containers=[{"name": "x", "image": "registry.corp/platform/credproxy-ui:1"}]
    )
    assert configuration_outcome(config, cat.pod_request(other)) == SKIPPED


def _review_fixture(group: str, kind: str, resource: str, sub: str, **fields: Any) -> dict:
    """A fixture in the format for non-pod reviews: AdmissionRequest fields under `request:`."""
    return {
        "request": {
            "kind": {"group": group, "version": "v1", "kind": kind},
            "resource": {"group": "", "version": "v1", "resource": resource},
            "subResource": sub,
            "namespace": "shop",
            **fields,
        }
    }


def test_fixtures_for_non_pod_reviews_are_built_from_their_request_fields() -> None:
    """The fixture format for TokenRequest and exec reviews gives the request the API
    server would send, and the chart sends it to the webhook."""
    token = request_of(
        _review_fixture(
            "authentication.k8s.io",
            "TokenRequest",
            "serviceaccounts",
            "token",
            operation="CREATE",
            name="default",
            object={"spec": {"audiences": ["sidecred"]}},
            userInfo={"username": "alice", "groups": ["system:authenticated"]},
        )
    )
    assert token["requestSubResource"] == "token" and token["requestKind"]["kind"] == "TokenRequest"
    assert token["oldObject"] is None and token["name"] == "default"
    exec_ = request_of(
        _review_fixture(
            "",
            "PodExecOptions",
            "pods",
            "exec",
            operation="CONNECT",
            name="web-0",
            object={"kind": "PodExecOptions", "container": "sidecred"},
        )
    )
    config = _config("defaults", VALIDATING)
    assert configuration_outcome(config, token) == CALLED
    assert configuration_outcome(config, exec_) == CALLED
    assert configuration_outcome(_config("defaults", MUTATING), exec_) == NOT_SENT
