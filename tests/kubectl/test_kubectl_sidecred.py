"""`kubectl sidecred status|audit` against the API stub, through a kubeconfig file, with
real sidecars answering through the pod proxy."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from sidecred.ops.kubectl import main
from tests.events.conftest import injected_pod
from tests.kubectl.conftest import ACCOUNT_ROLES, Cluster
from tests.sidecar.sidecar_process import ROLE_ARN

CONTAINER_ROLES_KEY = "sidecred.dev/container-roles"
BACKUP = "arn:aws:iam::123456789012:role/shop-backup"
STS_ERROR = "AccessDenied: Not authorized to perform sts:AssumeRoleWithWebIdentity (fault-injected)"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def table(text: str) -> list[list[str]]:
    """Split a kubectl-style table on runs of 3+ spaces (cells may hold single spaces)."""
    return [re.split(r" {3,}", line.strip()) for line in text.splitlines()]


def test_status_of_a_sidecar_whose_sts_refuses(
    cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "status", "web-refused", *cluster.kubeconfig_args)
    assert code == 0
    header, row = table(out)
    assert header == [
        "NAME", "READY", "ROLE", "CONTAINERS", "EXPIRES", "LAST ERROR", "STS CALLS", "STS FAILURES",
    ]  # fmt: skip
    assert row[:4] == ["web-refused", "false", ROLE_ARN, f"app={ROLE_ARN}"]
    assert row[4] == "<none>" and row[5] == STS_ERROR
    calls, failures = int(row[6]), int(row[7])  # every call failed (one may be in flight)
    assert failures >= 1 and calls - failures in (0, 1)


def test_status_of_a_ready_sidecar_as_json(
    cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "status", "web-ok", "-n", "shop", *cluster.kubeconfig_args, "-o", "json")  # fmt: skip
    assert code == 0
    [item] = json.loads(out)["items"]
    assert item["kind"] == "SidecarStatus" and item["ready"] == "true" and item["role"] == ROLE_ARN
    assert item["last_error"] == "" and item["sts_calls"] == 1 and item["sts_failures"] == 0
    # The expiry is the one the sidecar serves (its /readyz), in RFC 3339 UTC.
    assert item["expires"] in cluster.ok.readyz()[1] and item["expires"].endswith("Z")


def test_status_errors_are_kubectl_like(
    cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "status", "nope", *cluster.kubeconfig_args)[::2] == (1, 'Error from server (NotFound): pods "nope" not found\n')  # fmt: skip
    cluster.stub.put("pods", {"metadata": {"name": "bare", "namespace": "shop"}, "spec": {"containers": [{"name": "app", "image": "app"}]}})  # fmt: skip
    code, _, err = run(capsys, "status", "bare", *cluster.kubeconfig_args)
    assert code == 1 and 'pod "bare" in namespace "shop" has no sidecred sidecar' in err
    code, _, err = run(capsys, "status", "x", "--kubeconfig", "/nonexistent/kubeconfig")
    assert code == 2 and "cannot load the kubeconfig" in err
    assert run(capsys, "status")[0] == 2  # POD is required
    assert run(capsys, "status", "web-ok", "-o", "wide", *cluster.kubeconfig_args)[0] == 2


def test_audit_all_namespaces_finds_the_revoked_pod_and_the_refused_sidecar(
    cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "audit", "-A", *cluster.kubeconfig_args)
    assert code == 1  # problems found
    header, *rows = table(out)
    assert header == ["NAMESPACE", "NAME", "CONTAINERS", "ROLE", "PROBLEM", "DETAIL"]
    assert [r[:5] for r in rows] == [
        ["cart", "old-reader", "app", ROLE_ARN, "RoleNotPermitted"],
        ["shop", "web-refused", "<none>", ROLE_ARN, "SidecarNotReady"],
    ]
    assert rows[0][5] == (
        f'sidecred: role "{ROLE_ARN}" is not permitted in namespace "cart": '
        'iam.amazonaws.com/allowed-roles=["arn:aws:iam::123456789012:role/cart-*"]'
    )
    assert rows[1][5] == STS_ERROR


def test_audit_follows_the_context_namespace_and_outputs_yaml(
    cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "audit", "--context", "cart", "-o", "yaml", *cluster.kubeconfig_args)
    assert code == 1
    [item] = yaml.safe_load(out)["items"]
    assert (item["namespace"], item["name"], item["problem"]) == ("cart", "old-reader", "RoleNotPermitted")  # fmt: skip
    # The policy comes back: the pod is permitted again.
    cluster.stub.set_annotations("cart", {"iam.amazonaws.com/permitted": ".*"})
    code, out, err = run(capsys, "audit", "-n", "cart", *cluster.kubeconfig_args)
    assert (code, out) == (0, "") and err == "No problems found in namespace cart.\n"
    code, out, _ = run(capsys, "audit", "-n", "cart", "-o", "json", *cluster.kubeconfig_args)
    assert json.loads(out)["items"] == []


def test_audit_knows_allowed_roles_names_through_the_base_role_arn(
    cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster.stub.set_annotations("cart", {"iam.amazonaws.com/allowed-roles": '["reader"]'})
    code, out, _ = run(capsys, "audit", "-n", "cart", *cluster.kubeconfig_args, "-o", "json")
    [item] = json.loads(out)["items"]  # without the base ARN the name cannot be resolved
    assert code == 1 and "has no --base-role-arn to resolve it" in item["detail"]
    code, out, _ = run(capsys, "audit", "-n", "cart", *cluster.kubeconfig_args, "-o", "json", "--base-role-arn", "arn:aws:iam::123456789012:role/")  # fmt: skip
    assert code == 0 and json.loads(out)["items"] == []


def test_the_installed_plugin_runs_as_kubectl_would(cluster: Cluster, tmp_path: Path) -> None:
    plugin = Path(sys.executable).with_name("kubectl-sidecred")
    done = subprocess.run(
        [str(plugin), "audit", "-A", "-o", "json", *cluster.kubeconfig_args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stderr  # it found problems
    names = {(i["namespace"], i["name"]) for i in json.loads(done.stdout)["items"]}
    assert names == {("cart", "old-reader"), ("shop", "web-refused")}


def _container_roles_pod(cluster: Cluster) -> dict[str, Any]:
    """cart/nightly: app on the pod's role cart-app (permitted), backup on its own role
    shop-backup (not permitted in cart any more), metrics with none."""
    pod = injected_pod(
        cluster.ok,
        "nightly",
        ready=True,
        role=ACCOUNT_ROLES + "cart-app",
        containers=("app", "backup", "metrics"),
        annotations={CONTAINER_ROLES_KEY: f'{{"backup": "{BACKUP}", "metrics": ""}}'},
    )
    pod["metadata"].update(namespace="cart", uid="uid-nightly")
    return cluster.stub.put("pods", pod)


def test_status_and_audit_show_roles_per_container(
    cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    _container_roles_pod(cluster)
    code, out, _ = run(
        capsys, "status", "nightly", "-n", "cart", *cluster.kubeconfig_args, "-o", "json"
    )
    [item] = json.loads(out)["items"]
    assert code == 0 and item["role"] == ACCOUNT_ROLES + "cart-app"
    assert item["containers"] == {
        "app": ACCOUNT_ROLES + "cart-app",
        "backup": BACKUP,
        "metrics": "",
    }
    code, out, _ = run(capsys, "status", "nightly", "-n", "cart", *cluster.kubeconfig_args)
    assert f"app={ACCOUNT_ROLES}cart-app,backup={BACKUP},metrics=<none>" in table(out)[1]

    code, out, _ = run(capsys, "audit", "-n", "cart", *cluster.kubeconfig_args)
    header, *rows = table(out)  # one namespace: no NAMESPACE column
    assert header == ["NAME", "CONTAINERS", "ROLE", "PROBLEM", "DETAIL"]
    found = {(r[0], r[1]): r for r in rows}
    # Only backup's own role is revoked: the pod's role, which app uses, is still permitted.
    assert set(found) == {("old-reader", "app"), ("nightly", "backup")}
    assert found["nightly", "backup"][2:4] == [BACKUP, "RoleNotPermitted"]
    assert f'role "{BACKUP}" is not permitted in namespace "cart"' in found["nightly", "backup"][4]
