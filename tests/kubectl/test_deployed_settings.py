"""`kubectl sidecred check` and `audit` judge with the settings the cluster runs: the
chart's ConfigMap, rendered by Helm's engine and served by the API stub."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.kubectl.conftest import Cluster, deployed_settings
from tests.kubectl.test_kubectl_sidecred import run

BASE = "arn:aws:iam::123456789012:role/"


def _reader_pod(path: Path) -> str:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "report", "namespace": "shop", "annotations": {"iam.amazonaws.com/role": "reader"}},
        "spec": {"containers": [{"name": "app", "image": "app"}]},
    }  # fmt: skip
    path.write_text(yaml.safe_dump(pod))
    return str(path)


def test_check_resolves_bare_role_names_with_the_deployed_base_arn(
    cluster: Cluster, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Without the cluster's base role ARN a bare name is denied; the operator no longer
    has to repeat the webhook's --base-role-arn to get the cluster's answer."""
    pod = _reader_pod(tmp_path / "pod.yaml")
    code, out, _ = run(capsys, "check", "-f", pod, *cluster.kubeconfig_args)
    assert code == 1 and "no --base-role-arn" in out
    cluster.stub.put("configmaps", deployed_settings({"baseRoleArn": BASE}))
    code, out, err = run(capsys, "check", "-f", pod, *cluster.kubeconfig_args)
    assert (code, out, err) == (0, "Pod/report in shop: allowed (injected)\n", "")
    # A flag given here still wins over the cluster's setting.
    other = "arn:aws:iam::999999999999:role/"
    code, out, _ = run(
        capsys, "check", "-f", pod, *cluster.kubeconfig_args, "--base-role-arn", other
    )
    assert code == 1 and f"{other}reader" in out


def test_audit_uses_the_deployed_policy_mode_and_base_arn(
    cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster.stub.set_annotations("cart", {"iam.amazonaws.com/allowed-roles": '["reader"]'})
    code, out, _ = run(capsys, "audit", "-n", "cart", *cluster.kubeconfig_args, "-o", "yaml")
    assert code == 1 and "has no --base-role-arn" in out
    cluster.stub.put("configmaps", deployed_settings({"baseRoleArn": BASE}))
    assert run(capsys, "audit", "-n", "cart", *cluster.kubeconfig_args)[0] == 0
    cluster.stub.set_annotations("cart", {"iam.amazonaws.com/allowed-roles": '["cart-*"]'})
    assert run(capsys, "audit", "-n", "cart", *cluster.kubeconfig_args)[0] == 1
    cluster.stub.put("configmaps", deployed_settings({"namespacePolicy": "off"}))
    code, out, err = run(capsys, "audit", "-n", "cart", *cluster.kubeconfig_args)
    assert (code, err) == (0, "No problems found in namespace cart.\n")


def test_a_release_of_another_name_and_the_broker_source(
    cluster: Cluster, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Release `platform` in `ops` keeps its settings in ConfigMap ops/platform-sidecred; in
    broker mode its CA file is a path inside the webhook's pod, which the plugin leaves."""
    values = {"baseRoleArn": BASE, "credentialSource": "broker"}
    settings = deployed_settings(values, name="platform", namespace="ops")
    assert (settings["metadata"]["namespace"], settings["metadata"]["name"]) == ("ops", "platform-sidecred")  # fmt: skip
    assert not Path(settings["data"]["SIDECRED_BROKER_CA_FILE"]).exists()
    cluster.stub.put("configmaps", settings)
    pod = _reader_pod(tmp_path / "pod.yaml")
    release = ("--release", "platform", "--release-namespace", "ops")
    code, out, err = run(capsys, "check", "-f", pod, *cluster.kubeconfig_args, *release)
    assert (code, out, err) == (0, "Pod/report in shop: allowed (injected)\n", "")


def test_without_the_configmap_it_says_what_it_judges_with(
    cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "audit", "-A", *cluster.kubeconfig_args, "--release", "elsewhere")
    assert code == 1  # the revoked pod and the refused sidecar, as with the defaults
    assert "no deployed settings (configmap sidecred/elsewhere-sidecred: not found)" in err
