"""`helm uninstall`'s pre-delete hook: its Job, run for real against the API stub,
removes both webhook configurations before Helm deletes the webhook."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy import render
from sidecred.dev.kube_stub import (
    KubeApiStub,
    StubRequest,
    json_response,
    status_object,
    write_kubeconfig,
)
from tests.deploy.chart_support import find, rendered, rendered_hooks, validate_strict

CONFIGURATIONS = ("mutatingwebhookconfigurations", "validatingwebhookconfigurations")


def _hooks(name: str = "defaults") -> list[dict]:
    return rendered_hooks(name, "pre-delete")


def _job_container(name: str = "defaults") -> dict:
    (container,) = find(_hooks(name), "Job")["spec"]["template"]["spec"]["containers"]
    return container


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[KubeApiStub, Path]]:
    """The API stub holding the release's two webhook configurations as rendered."""
    stub = KubeApiStub()
    for obj in rendered("defaults"):
        if obj["kind"].endswith("WebhookConfiguration"):
            stub.put(obj["kind"].lower() + "s", obj)
    stub.start()
    yield stub, write_kubeconfig(tmp_path / "kubeconfig", stub.url)
    stub.stop()


def _run_job(kubeconfig: Path) -> subprocess.CompletedProcess[str]:
    """The Job's command with this interpreter; the kubeconfig stands in for the pod's
    service account, which the script reads the same way (kubernetes.config.load_config)."""
    container = _job_container()
    program, *args = container["command"]
    assert program == "python"
    env = {e["name"]: e["value"] for e in container["env"]}
    env["KUBECONFIG"] = str(kubeconfig)
    return subprocess.run(
        [sys.executable, *args], env=env, capture_output=True, text=True, timeout=60
    )


def test_job_removes_both_configurations_and_a_rerun_finds_them_gone(api) -> None:
    stub, kubeconfig = api
    assert all(stub.items(plural) for plural in CONFIGURATIONS)
    result = _run_job(kubeconfig)
    assert result.returncode == 0, result.stderr
    assert not any(stub.items(plural) for plural in CONFIGURATIONS)
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(line["kind"], line["result"]) for line in lines] == [
        ("MutatingWebhookConfiguration", "deleted"),
        ("ValidatingWebhookConfiguration", "deleted"),
    ]
    again = _run_job(kubeconfig)
    assert again.returncode == 0, again.stderr
    assert {json.loads(line)["result"] for line in again.stdout.splitlines()} == {"already gone"}


def test_job_fails_and_says_why_when_refused(api) -> None:
    """A failed hook stops `helm uninstall` before anything is deleted: the operator
    sees the reason, and the webhook keeps answering for the configurations."""
    stub, kubeconfig = api

    def forbidden(request: StubRequest):
        return json_response(403, status_object(403, "Forbidden", "no delete for you"))

    stub.route("DELETE", r"/apis/admissionregistration\.k8s\.io/v1/.*", forbidden, "forbidden")
    result = _run_job(kubeconfig)
    assert result.returncode == 1
    assert "cannot delete MutatingWebhookConfiguration sidecred: 403" in result.stderr
    assert all(stub.items(plural) for plural in CONFIGURATIONS)


def test_hook_account_may_delete_exactly_the_releases_two_configurations() -> None:
    hooks = _hooks()
    names = {
        obj["metadata"]["name"]
        for obj in rendered("defaults")
        if obj["kind"].endswith("WebhookConfiguration")
    }
    assert names == {"sidecred"}
    role = find(hooks, "ClusterRole")
    assert role["rules"] == [
        {
            "apiGroups": ["admissionregistration.k8s.io"],
            "resources": list(CONFIGURATIONS),
            "resourceNames": ["sidecred"],
            "verbs": ["delete"],
        }
    ]
    account = find(hooks, "ServiceAccount")
    binding = find(hooks, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": "sidecred"}
    ]
    job = find(hooks, "Job")
    assert job["spec"]["template"]["spec"]["serviceAccountName"] == account["metadata"]["name"]
    env = {e["name"]: e["value"] for e in _job_container()["env"]}
    assert env["SIDECRED_WEBHOOK_CONFIGURATION"] == "sidecred"
    for obj in hooks:
        validate_strict(obj)


def test_hook_objects_come_before_the_job_and_go_once_it_succeeded() -> None:
    """Helm creates one event's hooks in weight order and waits for a Job to finish;
    the account and its binding exist before the Job starts."""
    hooks = _hooks()
    weights = {o["kind"]: int(o["metadata"]["annotations"]["helm.sh/hook-weight"]) for o in hooks}
    assert weights["ServiceAccount"] < weights["Job"] and weights["ClusterRole"] < weights["Job"]
    assert weights["ClusterRoleBinding"] < weights["Job"]
    for obj in hooks:
        annotations = obj["metadata"]["annotations"]
        assert annotations["helm.sh/hook"] == "pre-delete"
        assert annotations["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"


def test_hook_can_be_turned_off_and_is_left_out_of_the_manifest() -> None:
    off = render.render_objects({"webhooksCleanup": {"enabled": False}}, hooks=True)
    assert [o["kind"] for o in off] == ["Pod"]
    assert "sidecred-uninstall" not in render.manifests()[render.MANIFEST_PATH]
