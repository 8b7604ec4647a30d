"""The broker as the chart deploys it (credentialSource broker, docs/architecture.md 2.3): HA and
restricted, the same image and settings as the webhook, its own AWS identity,
TLS the sidecars verify, and the webhook pointing sidecars at it."""

from __future__ import annotations

import pytest

from deploy import render
from tests.deploy.chart_support import assert_restricted, find, kinds, rendered

BROKER = "sidecred-broker"
BROKER_SETS = ["broker", "broker-existing-secrets", "monitoring-networkpolicy"]


def _spec(objects: list[dict], name: str) -> dict:
    return find(objects, "Deployment", name)["spec"]["template"]["spec"]


def _container(objects: list[dict], name: str) -> dict:
    (container,) = _spec(objects, name)["containers"]
    return container


def _volume_secret(objects: list[dict], deployment: str, volume: str) -> dict:
    (found,) = [v for v in _spec(objects, deployment)["volumes"] if v["name"] == volume]
    return found["secret"]


def test_no_broker_objects_unless_the_source_is_broker() -> None:
    objects = rendered("defaults")
    assert all(o["metadata"]["name"] != BROKER for o in objects)
    assert "SIDECRED_BROKER_URL" not in find(objects, "ConfigMap")["data"]


@pytest.mark.parametrize("name", BROKER_SETS)
def test_broker_deployment_is_highly_available_and_restricted(name: str) -> None:
    objects = rendered(name)
    deployment = find(objects, "Deployment", BROKER)
    assert deployment["spec"]["replicas"] >= 2
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector["app.kubernetes.io/component"] == "broker"
    pod = deployment["spec"]["template"]["spec"]
    term = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]
    assert term["podAffinityTerm"]["labelSelector"]["matchLabels"] == selector
    pdb = find(objects, "PodDisruptionBudget", BROKER)
    assert pdb["spec"]["selector"]["matchLabels"] == selector
    # The webhook's pods are not the broker's: the selectors do not overlap.
    webhook = find(objects, "Deployment", "sidecred")
    assert webhook["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == "webhook"
    container = _container(objects, BROKER)
    assert_restricted(container)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["image"] == _container(objects, "sidecred")["image"]
    assert container["command"] == ["sidecred"]
    args = container["args"]
    assert args[0] == "broker" and args[args.index("--port") + 1] == "8444"
    tls_dir = "/etc/sidecred/tls"
    assert args[args.index("--tls-cert") + 1] == f"{tls_dir}/tls.crt"
    assert args[args.index("--tls-key") + 1] == f"{tls_dir}/tls.key"
    assert container["ports"] == [{"name": "https", "containerPort": 8444, "protocol": "TCP"}]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert pod["serviceAccountName"] == BROKER


@pytest.mark.parametrize("name", BROKER_SETS)
def test_broker_service_serves_443_to_the_broker_port(name: str) -> None:
    objects = rendered(name)
    service = find(objects, "Service", BROKER)
    assert service["spec"]["ports"] == [
        {"name": "https", "port": 443, "targetPort": "https", "protocol": "TCP"}
    ]
    labels = find(objects, "Deployment", BROKER)["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()


@pytest.mark.parametrize("name", BROKER_SETS)
def test_webhook_and_broker_share_one_settings_configmap(name: str) -> None:
    """The broker's idea of the canonical sidecar equals the webhook's: the same
    settings, the same broker CA file at the same path."""
    objects = rendered(name)
    webhook, broker = _container(objects, "sidecred"), _container(objects, BROKER)
    assert webhook["envFrom"] == broker["envFrom"] == [{"configMapRef": {"name": "sidecred"}}]
    data = find(objects, "ConfigMap", "sidecred")["data"]
    assert data["SIDECRED_CREDENTIAL_SOURCE"] == "broker"
    assert data["SIDECRED_BROKER_URL"] == f"https://{BROKER}.{render.RELEASE_NAMESPACE}.svc:443"
    assert data["SIDECRED_BROKER_AUDIENCE"] == "sidecred-broker"
    ca_file = data["SIDECRED_BROKER_CA_FILE"]
    for deployment, container in (("sidecred", webhook), (BROKER, broker)):
        (mount,) = [m for m in container["volumeMounts"] if m["name"] == "broker-ca"]
        assert ca_file == mount["mountPath"] + "/ca.crt" and mount["readOnly"] is True
        secret = _volume_secret(objects, deployment, "broker-ca")
        # Only the CA: the webhook never mounts the broker's private key.
        assert secret["items"] == [{"key": "ca.crt", "path": "ca.crt"}]
        assert secret["secretName"] == _volume_secret(objects, BROKER, "tls")["secretName"]
    checksum = "checksum/settings"
    annotations = [
        find(objects, "Deployment", d)["spec"]["template"]["metadata"]["annotations"]
        for d in ("sidecred", BROKER)
    ]
    assert annotations[0][checksum] == annotations[1][checksum]


def test_broker_certificate_names_its_service_and_comes_from_the_chart_ca() -> None:
    objects = rendered("broker")
    certificate = find(objects, "Certificate", BROKER)
    ns = render.RELEASE_NAMESPACE
    assert certificate["spec"]["dnsNames"] == [
        BROKER,
        f"{BROKER}.{ns}",
        f"{BROKER}.{ns}.svc",
        f"{BROKER}.{ns}.svc.cluster.local",
    ]
    assert certificate["spec"]["issuerRef"] == {"kind": "Issuer", "name": "sidecred-ca"}
    assert certificate["spec"]["secretName"] == _volume_secret(objects, BROKER, "tls")["secretName"]
    assert "server auth" in certificate["spec"]["usages"]


def test_broker_identity_from_service_account_annotations() -> None:
    objects = rendered("broker")
    account = find(objects, "ServiceAccount", BROKER)
    assert account["metadata"]["annotations"] == {
        "eks.amazonaws.com/role-arn": "arn:aws:iam::111122223333:role/sidecred-broker"
    }
    # The webhook's account carries no AWS identity.
    assert "annotations" not in find(objects, "ServiceAccount", "sidecred")["metadata"]
    names = {e["name"] for e in _container(objects, BROKER)["env"]}
    assert "AWS_SHARED_CREDENTIALS_FILE" not in names


def test_broker_identity_from_an_existing_secret_mounted_for_the_broker_only() -> None:
    objects = rendered("broker-existing-secrets")
    assert not {"Issuer", "Certificate"} & set(kinds(objects))
    broker = _container(objects, BROKER)
    (mount,) = [m for m in broker["volumeMounts"] if m["name"] == "aws"]
    assert mount["readOnly"] is True
    env = {e["name"]: e.get("value") for e in broker["env"]}
    assert env["AWS_SHARED_CREDENTIALS_FILE"] == mount["mountPath"] + "/credentials"
    assert _volume_secret(objects, BROKER, "aws") == {
        "secretName": "broker-aws",
        "items": [{"key": "credentials", "path": "credentials"}],
    }
    webhook_volumes = _spec(objects, "sidecred")["volumes"]
    assert all(v.get("secret", {}).get("secretName") != "broker-aws" for v in webhook_volumes)
    assert _volume_secret(objects, BROKER, "tls")["secretName"] == "broker-serving"
    assert find(objects, "Deployment", BROKER)["spec"]["replicas"] == 3
