"""`sidecred check` as a user runs it: a subprocess on files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
    assert "decision: denied" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_allowed_pod_prints_patch_and_patched_pod(tmp_path: Path) -> None:
    pod_file, ns_file = write_case(tmp_path, "istio-native-sidecar-pod")
    result = run_check("--pod", str(pod_file), "--namespace", str(ns_file), *BASE)
    assert result.returncode == 0, result.stdout + result.stderr
    head, _, body = result.stdout.partition("\n---\n")
    assert "decision: allowed (injected)" in head
    assert "add /spec/initContainers/2 (sidecred)" in head
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
