"""`kubectl sidecred check -f FILE` against the live namespace policies on the API stub."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from sidecred.dev.kube_stub import KubeApiStub
from sidecred.ops.kubectl import main
from tests.kubectl.conftest import write_kubeconfig

ROLE = "arn:aws:iam::123456789012:role/reader"


def deployment(name: str, namespace: str | None, role: str = ROLE) -> dict:
    metadata = {"name": name, **({"namespace": namespace} if namespace else {})}
    template = {
        "metadata": {"labels": {"app": name}, "annotations": {"iam.amazonaws.com/role": role}},
        "spec": {"containers": [{"name": "app", "image": "app"}]},
    }
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata, "spec": {"selector": {"matchLabels": {"app": name}}, "template": template}}  # fmt: skip


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[KubeApiStub, Path]]:
    stub = KubeApiStub()
    stub.add_namespace("shop", {"iam.amazonaws.com/permitted": "arn:aws:iam::123456789012:role/[^/]*"})  # fmt: skip
    stub.add_namespace("cart", {"iam.amazonaws.com/allowed-roles": '["cart-*"]'})
    stub.start()
    yield stub, write_kubeconfig(tmp_path / "kubeconfig", stub.url)
    stub.stop()


def write(path: Path, *documents: dict) -> str:
    path.write_text(yaml.safe_dump_all(documents))
    return str(path)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str], str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


def test_decisions_follow_the_live_policy(
    cluster: tuple[KubeApiStub, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stub, kubeconfig = cluster
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "one-off", "annotations": {"iam.amazonaws.com/role": ROLE}}, "spec": {"containers": [{"name": "app", "image": "app"}]}}  # fmt: skip
    listed = {"apiVersion": "v1", "kind": "List", "items": [pod, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}]}  # fmt: skip
    files = write(
        tmp_path / "app.yaml", deployment("web", "shop"), deployment("report", "cart"), listed
    )
    flags = ("--kubeconfig", str(kubeconfig), "--base-role-arn", "arn:aws:iam::123456789012:role/")
    code, lines, _ = run(capsys, "check", "-f", files, *flags)
    assert code == 1
    assert lines[0] == "Deployment/web in shop: allowed (injected)"
    assert lines[1] == (
        "Deployment/report in cart: denied by mutation (code 403, not-permitted): "
        f'sidecred: role "{ROLE}" is not permitted in namespace "cart": '
        'iam.amazonaws.com/allowed-roles=["cart-*"]'
    )
    assert lines[2] == "Pod/one-off in shop: allowed (injected)"  # the context's namespace
    assert len(lines) == 3  # the ConfigMap is not a pod
    # The namespace owner permits the role: the next check follows at once.
    stub.set_annotations("cart", {"iam.amazonaws.com/allowed-roles": '["cart-*", "reader"]'})
    code, lines, _ = run(capsys, "check", "-f", files, *flags, "-o", "json")
    assert code == 0
    assert all(item["allowed"] for item in json.loads("\n".join(lines))["items"])


def test_unknown_namespace_and_bad_files(
    cluster: tuple[KubeApiStub, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, kubeconfig = cluster
    flags = ("--kubeconfig", str(kubeconfig))
    files = write(tmp_path / "ghost.yaml", deployment("web", "ghost"))
    code, lines, _ = run(capsys, "check", "-f", files, *flags)
    assert code == 1 and "namespace-unavailable" in lines[0] and 'namespace "ghost" not found' in lines[0]  # fmt: skip
    code, _, err = run(capsys, "check", "-f", str(tmp_path / "missing.yaml"), *flags)
    assert code == 2 and "cannot read" in err
    code, _, err = run(capsys, "check", "-f", write(tmp_path / "cm.yaml", {"kind": "ConfigMap"}), *flags)  # fmt: skip
    assert code == 2 and "no Pod or workload with a pod template" in err
    (tmp_path / "bad.yaml").write_text("kind: [unclosed")
    code, _, err = run(capsys, "check", "-f", str(tmp_path / "bad.yaml"), *flags)
    assert code == 2 and "is not valid YAML" in err and "Traceback" not in err
