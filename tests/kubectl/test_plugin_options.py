"""`kubectl sidecred` as kubectl users expect it: --version, -l, --request-timeout,
`status` over many pods (-A), and `audit` exiting 1 when it finds a problem."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from sidecred import __version__
from sidecred.dev.kube_stub import StubRequest, StubResponse, json_response
from sidecred.ops.kubectl import request_timeout
from tests.kubectl.conftest import Cluster
from tests.kubectl.test_kubectl_sidecred import STS_ERROR, run, table
from tests.sidecar.sidecar_process import ROLE_ARN


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--version")
    assert (code, out) == (0, f"kubectl-sidecred {__version__}\n")


def test_status_of_every_injected_pod_across_namespaces(
    cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "status", "-A", "--kubeconfig", str(cluster.kubeconfig))
    assert code == 0
    header, *rows = table(out)
    assert header[:3] == ["NAMESPACE", "NAME", "READY"]
    # Injected pods only (not "plain"), in every namespace, sorted; each asked through
    # the pod proxy.
    assert [r[:3] for r in rows] == [
        ["cart", "done-job", "true"],
        ["cart", "old-reader", "true"],
        ["shop", "web-ok", "true"],
        ["shop", "web-refused", "false"],
    ]
    assert rows[3][6] == STS_ERROR and all(r[3] == ROLE_ARN for r in rows)
    assert all(r[4] == f"app={ROLE_ARN}" for r in rows)  # the role each container reaches


def test_status_of_the_context_namespace_with_a_selector(
    cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    pod = cluster.stub.get("pods", "web-refused", "shop")
    pod["metadata"]["labels"]["app"] = "checkout"
    cluster.stub.put("pods", pod)
    kubeconfig = ("--kubeconfig", str(cluster.kubeconfig))
    code, out, _ = run(capsys, "status", *kubeconfig, "-o", "json")
    assert code == 0
    assert [i["name"] for i in json.loads(out)["items"]] == ["web-ok", "web-refused"]
    code, out, _ = run(capsys, "status", "-l", "app=checkout", *kubeconfig, "-o", "json")
    assert [i["name"] for i in json.loads(out)["items"]] == ["web-refused"]
    code, out, err = run(capsys, "status", "-l", "app=none", *kubeconfig)
    assert (code, out, err) == (0, "", "No sidecred pods found in namespace shop.\n")
    code, _, err = run(capsys, "status", "web-ok", "-A", *kubeconfig)
    assert code == 2 and "status POD takes neither -A nor -l" in err


def test_audit_exits_1_on_problems_and_selects_with_l(
    cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    kubeconfig = ("--kubeconfig", str(cluster.kubeconfig))
    for name, tier in (("web-ok", "back"), ("web-refused", "front")):
        pod = cluster.stub.get("pods", name, "shop")
        pod["metadata"]["labels"]["tier"] = tier
        cluster.stub.put("pods", pod)
    code, out, _ = run(capsys, "audit", "-A", "-l", "tier=back", *kubeconfig, "-o", "json")
    assert (code, json.loads(out)["items"]) == (0, [])  # web-ok has nothing wrong
    code, out, _ = run(capsys, "audit", "-A", "-l", "tier=front", *kubeconfig, "-o", "json")
    assert code == 1
    [item] = json.loads(out)["items"]
    assert (item["name"], item["problem"]) == ("web-refused", "SidecarNotReady")


def test_request_timeout_gives_up_on_a_silent_api_server(
    cluster: Cluster, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """An API server that accepts the request and never answers: without a timeout the
    plugin would wait for ever; with --request-timeout it says so and exits 1."""
    released = threading.Event()

    def silent(request: StubRequest) -> StubResponse:
        released.wait(60)
        return json_response(200, {"kind": "PodList", "items": [], "metadata": {}})

    cluster.stub.route("GET", r"/api/v1/namespaces/shop/pods", silent, "silent")
    try:
        kubeconfig = ("--kubeconfig", str(cluster.kubeconfig))
        code, _, err = run(capsys, "status", "--request-timeout", "1s", *kubeconfig)
    finally:
        released.set()
    assert code == 1 and "no answer from the Kubernetes API within --request-timeout" in err
    assert cluster.stub.requests["silent"] == 1


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("0", None), ("5", 5.0), ("30s", 30.0), ("1m", 60.0), ("1m30s", 90.0), ("250ms", 0.25)],
)
def test_request_timeout_reads_kubectl_durations(text: str, seconds: float | None) -> None:
    assert request_timeout(text) == seconds


def test_a_bad_request_timeout_is_a_usage_error(
    cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "audit", "--request-timeout", "soon", "--kubeconfig", str(cluster.kubeconfig))  # fmt: skip
    assert code == 2 and "invalid duration 'soon'" in err
