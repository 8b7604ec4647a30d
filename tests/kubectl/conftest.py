"""A small cluster on the API stub for `kubectl sidecred`: real sidecars behind the pod proxy.

shop (permits shop-*):  web-ok (sidecar ready), web-refused (STS refuses), plain (not injected)
cart (now permits only cart-*):  old-reader (admitted for shop-reader, revoked since),
                                 done-job (revoked too, but Succeeded: not audited)
sidecred:  the settings ConfigMap the chart installs with its defaults
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from deploy import render
from sidecred.dev.kube_stub import KubeApiStub
from sidecred.dev.kube_stub import write_kubeconfig as write_stub_kubeconfig
from sidecred.dev.processes import wait_until
from tests.events.conftest import answer_normally, injected_pod
from tests.sidecar.sidecar_process import SidecarProcess, sidecar_env, sidecar_factory
from tests.support.pod_proxy import add_pod_proxy
from tests.support.scripted_sts import ScriptedSts, access_denied, scripted_sts_factory

__all__ = ["scripted_sts_factory", "sidecar_factory"]

ACCOUNT_ROLES = "arn:aws:iam::123456789012:role/"


@dataclass
class Cluster:
    stub: KubeApiStub
    kubeconfig: Path
    ok: SidecarProcess
    refused: SidecarProcess

    @property
    def kubeconfig_args(self) -> tuple[str, str]:
        """`--kubeconfig` and the stub's kubeconfig, for a `kubectl sidecred` command line."""
        return ("--kubeconfig", str(self.kubeconfig))


def deployed_settings(values: dict | None = None, **release: str) -> dict:
    """The settings ConfigMap the chart installs (release sidecred in sidecred by default)."""
    (configmap,) = [o for o in render.render_objects(values, **release) if o["kind"] == "ConfigMap"]
    return configmap


def write_kubeconfig(path: Path, server: str) -> Path:
    """The stub's kubeconfig with two contexts, each with its namespace (current: shop)."""
    config = json.loads(write_stub_kubeconfig(path, server).read_text())
    stub_context = config["contexts"][0]["context"]
    config["contexts"] = [
        {"name": ns, "context": {**stub_context, "namespace": ns}} for ns in ("shop", "cart")
    ]
    config["current-context"] = "shop"
    path.write_text(json.dumps(config))
    return path


def start_sidecar(
    tmp: Path, sts: ScriptedSts, factory: Callable[..., SidecarProcess]
) -> SidecarProcess:
    tmp.mkdir()
    return factory(sidecar_env(tmp, sts.url, SIDECRED_RETRY_CAP_SECONDS="1"))


@pytest.fixture
def cluster(
    tmp_path: Path,
    scripted_sts_factory: Callable[..., ScriptedSts],
    sidecar_factory: Callable[..., SidecarProcess],
) -> Iterator[Cluster]:
    ok = start_sidecar(tmp_path / "ok", scripted_sts_factory(answer_normally), sidecar_factory)
    refused = start_sidecar(
        tmp_path / "refused", scripted_sts_factory(access_denied), sidecar_factory
    )
    ok.wait_ready()
    wait_until(lambda: "AccessDenied" in refused.readyz()[1], what="the STS refusal")
    stub = KubeApiStub()
    stub.add_namespace("shop", {"iam.amazonaws.com/permitted": ACCOUNT_ROLES + "[^/]*"})
    stub.add_namespace("cart", {"iam.amazonaws.com/allowed-roles": '["arn:aws:iam::123456789012:role/cart-*"]'})  # fmt: skip
    add_pod_proxy(stub)
    stub.put("configmaps", deployed_settings())
    stub.put("pods", injected_pod(ok, "web-ok", ready=True))
    stub.put("pods", injected_pod(refused, "web-refused"))
    plain = injected_pod(ok, "plain", ready=True)
    plain["metadata"]["labels"] = {"app": "plain"}
    stub.put("pods", plain)
    for name, phase in (("old-reader", "Running"), ("done-job", "Succeeded")):
        pod = injected_pod(ok, name, ready=True)
        pod["metadata"].update(namespace="cart", uid=f"uid-{name}")
        pod["status"]["phase"] = phase
        stub.put("pods", pod)
    stub.start()
    yield Cluster(stub, write_kubeconfig(tmp_path / "kubeconfig", stub.url), ok, refused)
    stub.stop()
