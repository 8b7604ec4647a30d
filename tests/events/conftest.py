"""Fixtures for the pod-event reporter: the API stub with a pod proxy, real sidecars, STS doubles."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from sidecred.dev.kube_stub import KubeApiStub
from sidecred.dev.processes import wait_until
from sidecred.pods.settings import Settings
from sidecred.webhook.decide import decide_mutation
from sidecred.webhook.mutate import apply_patch
from tests.sidecar.sidecar_process import ROLE_ARN, SidecarProcess, sidecar_env, sidecar_factory
from tests.support.pod_proxy import add_pod_proxy
from tests.support.scripted_sts import (
    ScriptedSts,
    access_denied,
    scripted_sts_factory,
    success_xml,
)
from tests.webhook.fixture_cases import pod_request

__all__ = ["scripted_sts_factory", "sidecar_factory"]

WEBHOOK_NAMESPACE = "sidecred-system"


@pytest.fixture
def stub() -> Iterator[KubeApiStub]:
    api = KubeApiStub()
    api.add_namespace("shop", {"iam.amazonaws.com/permitted": ROLE_ARN})
    api.add_namespace(WEBHOOK_NAMESPACE)
    add_pod_proxy(api)
    api.start()
    yield api
    api.stop()


def core_api(url: str) -> client.CoreV1Api:
    return client.CoreV1Api(client.ApiClient(client.Configuration(host=url)))


def injected_pod(
    sidecar: SidecarProcess,
    name: str = "web-7d4b9c-x2x9q",
    *,
    ready: bool = False,
    role: str = ROLE_ARN,
    containers: tuple[str, ...] = ("app",),
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The pod the webhook patched for `sidecar`'s role and ports, as the kubelet reports it
    while the sidecar runs: Pending (a native sidecar that has not started), IP 127.0.0.1."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "shop",
            "uid": sidecar.env["SIDECRED_POD_UID"],
            "labels": {"app": "web", "sidecred.dev/injected": "true"},
            "annotations": {"iam.amazonaws.com/role": role, **(annotations or {})},
        },
        "spec": {
            "serviceAccountName": "web",
            "containers": [{"name": c, "image": c} for c in containers],
        },
    }
    config = Settings(
        sidecar_port=sidecar.port,
        health_port=int(sidecar.env["SIDECRED_HEALTH_PORT"]),
        namespace_policy="off",
    )
    decision = decide_mutation(pod_request(pod), None, config)
    assert decision.allowed, decision.message
    patched = apply_patch(pod, decision.patch or [])
    patched["status"] = pod_status(ready)
    return patched


def pod_status(ready: bool) -> dict[str, Any]:
    state = {"running": {"startedAt": "2026-11-30T16:00:00Z"}}
    return {
        "phase": "Running" if ready else "Pending",
        "podIP": "127.0.0.1",
        "initContainerStatuses": [
            {
                "name": "sidecred",
                "ready": ready,
                "started": ready,
                "state": state,
                "restartCount": 0,
                "image": "sidecred",
                "imageID": "",
            }
        ],
    }


def answer_normally(params: dict[str, str]) -> tuple[int, str]:
    return 200, success_xml(params)


@dataclass
class Failing:
    """A real sidecar whose STS refuses, and its pod in the API stub."""

    stub: KubeApiStub
    sidecar: SidecarProcess
    sts: ScriptedSts
    pod: dict


@pytest.fixture
def failing(
    tmp_path: Path,
    stub: KubeApiStub,
    scripted_sts_factory: Callable[..., ScriptedSts],
    sidecar_factory: Callable[..., SidecarProcess],
) -> Failing:
    sts = scripted_sts_factory(access_denied)
    sidecar = sidecar_factory(sidecar_env(tmp_path, sts.url, SIDECRED_RETRY_CAP_SECONDS="1"))
    wait_until(lambda: "AccessDenied" in sidecar.readyz()[1], what="the sidecar's STS refusal")
    return Failing(stub, sidecar, sts, stub.put("pods", injected_pod(sidecar)))


def events(stub: KubeApiStub, reason: str) -> list[dict]:
    return [e for e in stub.items("events", "shop") if e["reason"] == reason]
