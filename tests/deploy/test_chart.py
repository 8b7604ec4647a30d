"""The Helm chart: lint, render with several value sets, validate every object,
and check the fields the design depends on (RBAC, webhook registration, pod security)."""

from __future__ import annotations

import base64
import subprocess
import sys

import helm_python
import pytest

from deploy import render
from tests.deploy.chart_support import (
    CA_BUNDLE,
    CERT_MANAGER_KINDS,
    VALUE_SETS,
    find,
    kinds,
    rendered,
    validate_strict,
)

ALL_SETS = sorted(VALUE_SETS)


@pytest.mark.parametrize("name", ALL_SETS)
def test_chart_lints_clean_in_strict_mode(name: str) -> None:
    report = helm_python.lint(
        render.CHART_DIR, VALUE_SETS[name], strict=True, namespace=render.RELEASE_NAMESPACE
    )
    # Severity 1 is informational (e.g. "icon is recommended"); warnings and errors fail.
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert problems == [] and report["errors"] == [], report


@pytest.mark.parametrize("name", ALL_SETS)
def test_every_rendered_object_is_valid_kubernetes(name: str) -> None:
    objects = rendered(name)
    assert objects, "the chart rendered nothing"
    for obj in objects:
        if obj["kind"] in CERT_MANAGER_KINDS:
            continue  # no schema shipped; see test_cert_manager_chain
        validate_strict(obj)


def test_committed_manifest_is_the_default_render() -> None:
    assert render.MANIFEST_PATH.read_text() == render.render_manifest(), (
        "deploy/sidecred.yaml is stale: run scripts/render-manifest"
    )


def test_manifest_is_in_apply_order() -> None:
    order = kinds(rendered("defaults"))
    assert order[0] == "Namespace"
    assert order.index("Deployment") < order.index("MutatingWebhookConfiguration")
    assert order[-2:] == ["MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"]


@pytest.mark.parametrize("name", ALL_SETS)
def test_rbac_is_read_only_on_namespaces_and_nothing_else(name: str) -> None:
    objects = rendered(name)
    assert kinds(objects).count("ClusterRole") == 1
    assert "Role" not in kinds(objects) and "RoleBinding" not in kinds(objects)
    role = find(objects, "ClusterRole")
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch"]}
    ]
    binding = find(objects, "ClusterRoleBinding")
    account = find(objects, "ServiceAccount")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": account["metadata"]["name"],
            "namespace": render.RELEASE_NAMESPACE,
        }
    ]


def _webhook(objects: list[dict], kind: str) -> dict:
    config = find(objects, kind)
    assert len(config["webhooks"]) == 1
    return config["webhooks"][0]


def _webhooks(objects: list[dict]) -> list[dict]:
    return [
        hook
        for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")
        for hook in find(objects, kind)["webhooks"]
    ]


@pytest.mark.parametrize("name", ALL_SETS)
def test_mutating_webhook_registration(name: str) -> None:
    objects = rendered(name)
    hook = _webhook(objects, "MutatingWebhookConfiguration")
    assert hook["admissionReviewVersions"] == ["v1"]
    assert hook["failurePolicy"] == "Fail"
    assert hook["sideEffects"] == "None"
    assert hook["timeoutSeconds"] == 5
    assert hook["reinvocationPolicy"] == "IfNeeded"
    assert hook["rules"] == [
        {
            "apiGroups": [""],
            "apiVersions": ["v1"],
            "operations": ["CREATE"],
            "resources": ["pods"],
            "scope": "Namespaced",
        }
    ]
    assert hook["clientConfig"]["service"]["path"] == "/mutate"
    assert len(hook["matchConditions"]) == 1


def _rule(operations: list[str], resources: list[str], scope: str = "Namespaced") -> dict:
    return {
        "apiGroups": [""],
        "apiVersions": ["v1"],
        "operations": operations,
        "resources": resources,
        "scope": scope,
    }


POD_RULES = [
    _rule(["CREATE", "UPDATE"], ["pods"]),
    _rule(["UPDATE"], ["pods/ephemeralcontainers"]),
]
VALIDATING_RULES = {
    "pods.validate.sidecred.dev": POD_RULES,
    "sidecar.validate.sidecred.dev": POD_RULES,
    "connect.validate.sidecred.dev": [_rule(["CONNECT"], ["pods/exec", "pods/attach"])],
    "tokenrequest.validate.sidecred.dev": [_rule(["CREATE"], ["serviceaccounts/token"])],
    "namespaces.validate.sidecred.dev": [_rule(["CREATE", "UPDATE"], ["namespaces"], "Cluster")],
}


@pytest.mark.parametrize("name", ALL_SETS)
def test_validating_webhooks_registration(name: str) -> None:
    """Each path of DESIGN 3.3/3.4 has its rules, all at /validate with failurePolicy Fail;
    what each condition selects is test_match_conditions' business."""
    hooks = find(rendered(name), "ValidatingWebhookConfiguration")["webhooks"]
    assert {hook["name"]: hook["rules"] for hook in hooks} == VALIDATING_RULES
    for hook in hooks:
        assert hook["admissionReviewVersions"] == ["v1"]
        assert hook["failurePolicy"] == "Fail"
        assert hook["sideEffects"] == "None"
        assert hook["timeoutSeconds"] == 5
        assert hook["clientConfig"]["service"]["path"] == "/validate"
        assert hook["matchConditions"], hook["name"]


@pytest.mark.parametrize("name", ALL_SETS)
def test_webhooks_skip_their_own_namespace_and_kube_system(name: str) -> None:
    for hook in _webhooks(rendered(name)):
        (expression,) = hook["namespaceSelector"]["matchExpressions"]
        assert expression["key"] == "kubernetes.io/metadata.name"
        assert expression["operator"] == "NotIn"
        expected = {
            render.RELEASE_NAMESPACE,
            "kube-system",
            *VALUE_SETS[name].get("excludedNamespaces", []),
        }
        assert sorted(expression["values"]) == sorted(expected)  # and no duplicates


def test_namespace_labels_opt_in_injection_but_not_the_boundary() -> None:
    """The opt-in scopes injection and annotated pods (in a namespace not yet migrated
    they are kube2iam's or kiam's); forged sidecars, exec, tokens and namespace
    policies are judged in every namespace."""
    selectors = {
        hook["name"]: hook["namespaceSelector"] for hook in _webhooks(rendered("opt-in-labels"))
    }
    opted = {name for name, selector in selectors.items() if "matchLabels" in selector}
    assert opted == {"mutate.sidecred.dev", "pods.validate.sidecred.dev"}
    assert selectors["mutate.sidecred.dev"]["matchLabels"] == {"sidecred.dev/enabled": "true"}
    for name in ALL_SETS:
        if not VALUE_SETS[name].get("namespaceLabels"):
            assert all(
                "matchLabels" not in h["namespaceSelector"] for h in _webhooks(rendered(name))
            )


@pytest.mark.parametrize("name", ALL_SETS)
def test_webhooks_call_the_service_on_443_which_targets_the_tls_port(name: str) -> None:
    objects = rendered(name)
    service = find(objects, "Service")
    deployment = find(objects, "Deployment")
    (port,) = service["spec"]["ports"]
    assert port["port"] == 443 and port["targetPort"] == "https"
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    (container_port,) = container["ports"]
    assert container_port == {"name": "https", "containerPort": 8443, "protocol": "TCP"}
    assert (
        service["spec"]["selector"].items()
        <= deployment["spec"]["template"]["metadata"]["labels"].items()
    )
    for hook in _webhooks(objects):
        target = hook["clientConfig"]["service"]
        assert target["name"] == service["metadata"]["name"]
        assert target["namespace"] == service["metadata"]["namespace"]
        assert target["port"] == 443


def test_deployment_is_highly_available_and_restricted() -> None:
    objects = rendered("defaults")
    deployment = find(objects, "Deployment")
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    assert spec["replicas"] == 2
    term = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert (
        term["podAffinityTerm"]["labelSelector"]["matchLabels"] == spec["selector"]["matchLabels"]
    )
    pdb = find(objects, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == spec["selector"]["matchLabels"]

    (container,) = pod["containers"]
    context = container["securityContext"]
    assert context["runAsNonRoot"] is True and context["runAsUser"] == 65532
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert "limits" in container["resources"] and "requests" in container["resources"]
    assert container["readinessProbe"]["httpGet"] == {
        "path": "/readyz",
        "port": "https",
        "scheme": "HTTPS",
    }
    assert container["livenessProbe"]["httpGet"] == {
        "path": "/healthz",
        "port": "https",
        "scheme": "HTTPS",
    }
    assert pod["serviceAccountName"] == find(objects, "ServiceAccount")["metadata"]["name"]


def _container(objects: list[dict]) -> dict:
    (container,) = find(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    return container


def _env(objects: list[dict]) -> dict[str, str]:
    return {item["name"]: item["value"] for item in _container(objects)["env"]}


def test_webhook_command_and_tls_files_come_from_the_mounted_secret() -> None:
    objects = rendered("defaults")
    container = _container(objects)
    assert container["command"] == ["sidecred"]
    args = container["args"]
    assert args[0] == "webhook"
    cert = args[args.index("--tls-cert") + 1]
    key = args[args.index("--tls-key") + 1]
    assert args[args.index("--port") + 1] == "8443"
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "tls"]
    assert mount["readOnly"] is True and "subPath" not in mount  # subPath would block rotation
    assert cert == f"{mount['mountPath']}/tls.crt" and key == f"{mount['mountPath']}/tls.key"
    volumes = {
        v["name"]: v for v in find(objects, "Deployment")["spec"]["template"]["spec"]["volumes"]
    }
    serving = find(objects, "Certificate", "sidecred")
    assert volumes["tls"]["secret"]["secretName"] == serving["spec"]["secretName"]


def test_default_settings_reach_the_webhook_as_env() -> None:
    env = _env(rendered("defaults"))
    assert env == {
        "SIDECRED_ANNOTATION_KEY": "iam.amazonaws.com/role",
        "SIDECRED_NAMESPACE_POLICY": "require",
        "SIDECRED_CREDENTIAL_SOURCE": "web-identity",
        "SIDECRED_SIDECAR_IMAGE": "ghcr.io/sidecred/sidecred:0.1.0",
        "SIDECRED_SIDECAR_MODE": "native",
        "SIDECRED_TOKEN_MODE": "file",
        "SIDECRED_SESSION_DURATION": "3600",
        "SIDECRED_TOKEN_AUDIENCE": "sidecred",
        "SIDECRED_SIDECAR_PORT": "61080",
        "SIDECRED_HEALTH_PORT": "61081",
    }
    assert _container(rendered("defaults"))["image"] == env["SIDECRED_SIDECAR_IMAGE"]


def test_non_default_settings_reach_the_webhook_as_env() -> None:
    env = _env(rendered("assume-role-env-token"))
    assert env["SIDECRED_CREDENTIAL_SOURCE"] == "assume-role"
    assert env["SIDECRED_TOKEN_MODE"] == "env"
    assert env["SIDECRED_SIDECAR_MODE"] == "container"
    assert env["SIDECRED_REGION"] == "eu-west-1"
    assert env["SIDECRED_BASE_ROLE_ARN"] == "arn:aws:iam::111122223333:role/"
    assert env["SIDECRED_SESSION_DURATION"] == "7200"
    assert env["SIDECRED_SIDECAR_IMAGE"] == "registry.example.com/sidecred:pinned"
    assert _env(rendered("custom-annotation-key"))["SIDECRED_ANNOTATION_KEY"] == (
        "example.com/aws-role"
    )


def test_cert_manager_chain_issues_the_serving_certificate_and_injects_its_ca() -> None:
    objects = rendered("defaults")
    selfsigned = find(objects, "Issuer", "sidecred-selfsigned")
    assert selfsigned["spec"] == {"selfSigned": {}}
    ca = find(objects, "Certificate", "sidecred-ca")
    assert ca["spec"]["isCA"] is True
    assert ca["spec"]["issuerRef"] == {"kind": "Issuer", "name": "sidecred-selfsigned"}
    ca_issuer = find(objects, "Issuer", "sidecred-ca")
    assert ca_issuer["spec"] == {"ca": {"secretName": ca["spec"]["secretName"]}}
    serving = find(objects, "Certificate", "sidecred")
    assert serving["spec"]["issuerRef"] == {"kind": "Issuer", "name": "sidecred-ca"}
    assert serving["spec"]["dnsNames"] == [
        "sidecred",
        "sidecred.sidecred",
        "sidecred.sidecred.svc",
        "sidecred.sidecred.svc.cluster.local",
    ]
    assert "server auth" in serving["spec"]["usages"]
    for obj in objects:
        if obj["kind"] in CERT_MANAGER_KINDS:
            assert obj["apiVersion"] == "cert-manager.io/v1"
            assert obj["metadata"]["namespace"] == render.RELEASE_NAMESPACE
    for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
        config = find(objects, kind)
        assert config["metadata"]["annotations"] == {
            "cert-manager.io/inject-ca-from": "sidecred/sidecred"
        }
        assert all("caBundle" not in hook["clientConfig"] for hook in config["webhooks"])


def test_existing_secret_mode_uses_the_given_secret_and_ca_bundle() -> None:
    objects = rendered("existing-secret")
    assert not CERT_MANAGER_KINDS & set(kinds(objects))
    volumes = find(objects, "Deployment")["spec"]["template"]["spec"]["volumes"]
    assert {"name": "tls", "secret": {"secretName": "sidecred-serving"}} in volumes
    for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
        config = find(objects, kind)
        assert "annotations" not in config["metadata"]
        for hook in config["webhooks"]:
            assert hook["clientConfig"]["caBundle"] == CA_BUNDLE
        base64.b64decode(CA_BUNDLE, validate=True)


def test_namespace_object_is_optional_and_labelled_restricted() -> None:
    namespace = find(rendered("defaults"), "Namespace")
    assert namespace["metadata"]["name"] == render.RELEASE_NAMESPACE
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert "Namespace" not in kinds(rendered("custom-annotation-key"))
    assert find(rendered("custom-annotation-key"), "Deployment")["spec"]["replicas"] == 3


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"tls": {"certManager": {"enabled": False}}}, "tls."),
        (
            {"tls": {"certManager": {"enabled": False}, "caBundle": CA_BUNDLE}},
            "tls.existingSecret is required",
        ),
        (
            {"tls": {"certManager": {"enabled": False}, "existingSecret": "s"}},
            "tls.caBundle is required",
        ),
        ({"annotationKey": "iam.amazonaws.com/role' || true || '"}, "annotationKey"),
        ({"tokenAudience": "sidecred'] || true || ['"}, "tokenAudience"),
        ({"image": {"repository": "ghcr.io/x' + '", "pullPolicy": "Always"}}, "repository"),
        ({"credentialSource": "instance-profile"}, "credentialSource"),
        ({"sessionDuration": 900}, "sessionDuration"),
        ({"tokenMode": "header"}, "tokenMode"),
        ({"replica": 2}, "replica"),
    ],
    ids=[
        "tls-nothing",
        "tls-no-secret",
        "tls-no-ca",
        "cel-injection",
        "cel-injection-audience",
        "cel-injection-repository",
        "bad-source",
        "short-session",
        "bad-token-mode",
        "misspelt-value",
    ],
)
def test_bad_values_fail_to_render_with_a_message_naming_the_value(
    values: dict, expected: str
) -> None:
    with pytest.raises(helm_python.HelmError) as caught:
        render.render_documents(values)
    assert expected in str(caught.value)


def test_documented_sidecred_certs_output_is_a_ca_bundle_the_chart_accepts(tmp_path) -> None:
    """The README's path without cert-manager: `sidecred certs` prints the caBundle."""
    result = subprocess.run(
        [
            *(sys.executable, "-m", "sidecred.cli", "certs"),
            *("--service", "sidecred", "--namespace", "sidecred", "--out", str(tmp_path / "tls")),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    bundle = result.stdout.strip()
    ca = (tmp_path / "tls" / "ca.crt").read_bytes()
    assert base64.b64decode(bundle, validate=True) == ca
    values = {
        "tls": {
            "certManager": {"enabled": False},
            "existingSecret": "sidecred-tls",
            "caBundle": bundle,
        }
    }
    for obj in render.render_objects(values):
        if obj["kind"].endswith("WebhookConfiguration"):
            assert {h["clientConfig"]["caBundle"] for h in obj["webhooks"]} == {bundle}
            validate_strict(obj)


@pytest.mark.parametrize("name", ALL_SETS)
def test_chart_env_is_read_by_the_webhook_config(name: str) -> None:
    """Every SIDECRED_* variable the chart sets is one the webhook reads, with the value intended."""
    import argparse

    from sidecred.webhook import config as webhook_config

    env = _env(rendered(name))
    parser = argparse.ArgumentParser()
    webhook_config.add_config_arguments(parser)
    config = webhook_config.config_from_args(parser.parse_args([]), env)
    by_env = {webhook_config.env_name(f): f for f in config.__dataclass_fields__}
    assert set(env) <= set(by_env), set(env) - set(by_env)
    for variable, value in env.items():
        assert str(getattr(config, by_env[variable])) == value, variable
