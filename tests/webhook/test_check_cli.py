"""`sidecred check` as a user runs it: a subprocess on files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).parent / "fixtures"
BASE = ["--base-role-arn", "arn:aws:iam::111122223333:role/"]


def run_check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sidecred.cli", "check", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )


def write_case(tmp_path: Path, fixture: str) -> tuple[Path, Path]:
    case = yaml.safe_load((FIXTURES / f"{fixture}.yaml").read_text())
    pod_file, ns_file = tmp_path / "pod.yaml", tmp_path / "ns.yaml"
    pod = case["pod"]
    pod["metadata"].setdefault("namespace", case["namespace"]["metadata"]["name"])
    pod_file.write_text(yaml.safe_dump(pod))
    ns_file.write_text(yaml.safe_dump(case["namespace"]))
    return pod_file, ns_file


def test_denied_pod_prints_the_one_message(tmp_path: Path) -> None:
    pod_file, ns_file = write_case(tmp_path, "deny-wrong-role")
    result = run_check("--pod", str(pod_file), "--namespace", str(ns_file), *BASE)
    assert result.returncode == 1, result.stderr
    message = (
        'sidecred: role "arn:aws:iam::111122223333:role/reader" is not permitted in namespace '
        '"shop": iam.amazonaws.com/permitted="arn:aws:iam::111122223333:role/shop-.*"'
    )
    assert result.stdout.count(message) == 1
    assert result.stdout.startswith(
        "Pod/web- in shop: denied by mutation (code 403, not-permitted): "
    )
    assert "Traceback" not in result.stdout + result.stderr


def test_allowed_pod_prints_patch_and_patched_pod(tmp_path: Path) -> None:
    pod_file, ns_file = write_case(tmp_path, "istio-native-sidecar-pod")
    result = run_check("--pod", str(pod_file), "--namespace", str(ns_file), *BASE)
    assert result.returncode == 0, result.stdout + result.stderr
    head, _, body = result.stdout.partition("\n---\n")
    assert head.startswith("Pod/cart-5f7b8c9d4- in shop: allowed (injected)\n")
    assert "  patch: add /spec/initContainers/2 (sidecred)" in head
    patched = yaml.safe_load(body)
    assert [c["name"] for c in patched["spec"]["initContainers"]] == [
        "istio-init",
        "istio-proxy",
        "sidecred",
    ]


def test_deployment_file_is_checked_through_its_template(tmp_path: Path) -> None:
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {
                    "labels": {"app": "web"},
                    "annotations": {"iam.amazonaws.com/role": "shop-web"},
                },
                "spec": {"containers": [{"name": "web", "image": "nginx"}]},
            },
        },
    }
    namespace = {
        "metadata": {
            "name": "shop",
            "annotations": {"iam.amazonaws.com/allowed-roles": '["shop-*"]'},
        }
    }
    (tmp_path / "d.yaml").write_text(yaml.safe_dump(deployment))
    (tmp_path / "ns.yaml").write_text(yaml.safe_dump(namespace))
    result = run_check(
        "--pod", str(tmp_path / "d.yaml"), "--namespace", str(tmp_path / "ns.yaml"), *BASE
    )
    assert result.returncode == 0, result.stdout + result.stderr
    patched = yaml.safe_load(result.stdout.partition("\n---\n")[2])
    assert patched["metadata"]["generateName"] == "web-"
    assert patched["metadata"]["annotations"]["sidecred.dev/injected"].endswith(":role/shop-web")


def test_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    result = run_check("--pod", str(tmp_path / "absent.yaml"))
    assert result.returncode == 2
    assert "cannot read pod file" in result.stderr and "No such file" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_yaml_and_bad_option_are_usage_errors(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("a: [unclosed\n")
    result = run_check("--pod", str(tmp_path / "bad.yaml"))
    assert result.returncode == 2 and "is not valid YAML" in result.stderr
    pod_file, _ = write_case(tmp_path, "deny-wrong-role")
    result = run_check("--pod", str(pod_file), "--session-duration", "60")
    assert result.returncode == 2 and "--session-duration=60" in result.stderr


def test_no_namespace_file_fails_closed(tmp_path: Path) -> None:
    pod_file, _ = write_case(tmp_path, "job-pod-native-sidecar-first")
    result = run_check("--pod", str(pod_file), *BASE)
    assert result.returncode == 1
    assert "no --namespace file was given" in result.stdout
    result = run_check("--pod", str(pod_file), *BASE, "--namespace-policy", "off")
    assert result.returncode == 0, result.stdout


EXAMPLES = ROOT / "deploy" / "examples"
POLICY = {"iam.amazonaws.com/allowed-roles": '["shop-*"]'}


def workload(kind: str, name: str, role: str) -> dict:
    """A `kind` object in namespace shop whose pod template carries `role`."""
    template = {
        "metadata": {"labels": {"app": name}, "annotations": {"iam.amazonaws.com/role": role}},
        "spec": {"containers": [{"name": "app", "image": "app:1"}]},
    }
    meta = {"name": name, "namespace": "shop"}
    if kind == "Pod":
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {**meta, **template["metadata"]},
            "spec": template["spec"],
        }
    spec: dict = {"template": template}
    if kind == "CronJob":
        spec = {"schedule": "@hourly", "jobTemplate": {"spec": {"template": template}}}
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": meta, "spec": spec}


def test_readme_step_four_file_is_checked(tmp_path: Path) -> None:
    result = run_check(
        "-f",
        str(EXAMPLES / "pod-shop-reader.yaml"),
        "--namespace",
        str(EXAMPLES / "namespace-shop.yaml"),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    head, _, body = result.stdout.partition("\n---\n")
    # One decision line; the ServiceAccount in the same file is not a pod and is skipped.
    assert [line for line in head.splitlines() if not line.startswith("  ")] == [
        "Deployment/shop-reader in shop: allowed (injected)"
    ]
    assert yaml.safe_load(body)["metadata"]["generateName"] == "shop-reader-"


def test_every_workload_kind_gets_one_decision_line_and_any_denial_exits_1(
    tmp_path: Path,
) -> None:
    kinds = ["Pod", "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob"]
    documents = [
        {
            "kind": "Namespace",
            "apiVersion": "v1",
            "metadata": {"name": "shop", "annotations": POLICY},
        }
    ]
    documents += [workload(kind, kind.lower(), "shop-web") for kind in kinds]
    documents.append(workload("Deployment", "admin", "admin"))
    path = tmp_path / "all.yaml"
    path.write_text(yaml.safe_dump_all(documents))
    result = run_check("-f", str(path), "--quiet", *BASE)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[:-1] == [f"{kind}/{kind.lower()} in shop: allowed (injected)" for kind in kinds]
    assert lines[-1].startswith(
        "Deployment/admin in shop: denied by mutation (code 403, not-permitted): "
    )
    assert 'role "arn:aws:iam::111122223333:role/admin" is not permitted' in lines[-1]
    assert "Traceback" not in result.stderr


def test_a_list_read_from_stdin_is_checked(tmp_path: Path) -> None:
    items = [workload("Job", "nightly", "shop-batch"), workload("Pod", "web", "shop-web")]
    listing = yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": items})
    namespace = tmp_path / "ns.yaml"
    namespace.write_text(yaml.safe_dump({"metadata": {"name": "shop", "annotations": POLICY}}))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sidecred.cli",
            "check",
            "-f",
            "-",
            "--namespace",
            str(namespace),
            *BASE,
        ],
        input=listing,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    head, _, body = result.stdout.partition("\n---\n")
    assert "Job/nightly in shop: allowed (injected)" in head
    assert "Pod/web in shop: allowed (injected)" in head
    patched = list(yaml.safe_load_all("---\n" + body))
    assert [
        pod["metadata"].get("generateName", pod["metadata"].get("name")) for pod in patched
    ] == ["nightly-", "web"]


def test_a_pod_outside_the_given_namespaces_is_denied_naming_them(tmp_path: Path) -> None:
    pod = workload("Pod", "web", "shop-web")
    pod["metadata"]["namespace"] = "other"
    (tmp_path / "pod.yaml").write_text(yaml.safe_dump(pod))
    result = run_check(
        "-f",
        str(tmp_path / "pod.yaml"),
        "--namespace",
        str(EXAMPLES / "namespace-shop.yaml"),
        *BASE,
    )
    assert result.returncode == 1
    assert "no Namespace 'other' in the given files" in result.stdout


@pytest.mark.parametrize(
    ("content", "error"),
    [
        ("apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: x}\n", "no Pod or workload"),
        ("- just\n- a list\n", "not a YAML object"),
        ("kind: Deployment\nmetadata: {name: d}\nspec: {}\n", "Deployment in"),
    ],
)
def test_files_without_a_checkable_pod_are_usage_errors(
    tmp_path: Path, content: str, error: str
) -> None:
    (tmp_path / "x.yaml").write_text(content)
    result = run_check("-f", str(tmp_path / "x.yaml"), *BASE)
    assert result.returncode == 2, result.stdout
    assert error in result.stderr and "Traceback" not in result.stderr


def test_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    # Far more output than a pipe buffers, so the writer meets the closed pipe.
    source = (EXAMPLES / "pod-shop-reader.yaml").read_text()
    (tmp_path / "many.yaml").write_text("\n---\n".join([source] * 200))
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sidecred.cli",
            "check",
            "-f",
            str(tmp_path / "many.yaml"),
            "--namespace",
            str(EXAMPLES / "namespace-shop.yaml"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    assert process.stdout is not None and process.stderr is not None
    first = process.stdout.readline()
    process.stdout.close()  # what `| head -1` does after its line
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=60) == 0
    assert first == b"Deployment/shop-reader in shop: allowed (injected)\n"
    assert stderr == ""


def test_check_shows_the_role_each_container_reaches_and_refuses_a_bad_map(
    tmp_path: Path,
) -> None:
    pod_file, ns_file = write_case(tmp_path, "container-roles-app-backup-metrics-file-mode")
    result = run_check("--pod", str(pod_file), "--namespace", str(ns_file), "-q", *BASE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == "Pod/web-0 in shop: allowed (injected)\n"
    result = run_check("--pod", str(pod_file), "--namespace", str(ns_file), *BASE)
    roles = (
        "  roles: app=arn:aws:iam::111122223333:role/shop-app, "
        "backup=arn:aws:iam::111122223333:role/shop-backup, metrics=none\n"
    )
    assert roles in result.stdout
    pod_file, ns_file = write_case(tmp_path, "deny-container-role-not-permitted")
    result = run_check("--pod", str(pod_file), "--namespace", str(ns_file), *BASE)
    assert result.returncode == 1
    assert result.stdout.startswith(
        "Pod/web-0 in shop: denied by mutation (code 403, not-permitted): sidecred: container "
        '"backup" (sidecred.dev/container-roles): role "arn:aws:iam::111122223333:role/admin"'
    )
