"""The sidecar's env as the webhook writes it and a kubelet fills it in, for tests and benchmarks.

Nothing is written by hand: a pod goes through the webhook's own mutating
decision (`decide_mutation`, hence `build_sidecar`), and `sidecred.dev.local_pod`
fills in the downward API and maps the volumes (the token emptyDir, the
projected service-account token) to directories under `workdir`.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sidecred.dev.local_pod import LocalPod
from sidecred.dev.processes import free_port
from sidecred.pods.settings import Settings
from sidecred.webhook.decide import decide_mutation
from sidecred.webhook.mutate import apply_patch
from sidecred.webhook.review import pod_request
from tests.support.sts import MOTO_REGION

NAMESPACE = "shop"
POD_NAME = "web-7d4b9c-x2x9q"
POD_UID = "6f1c1f0e-3b8a-4d6e-9a57-0c2f4e1b7a10"
SERVICE_ACCOUNT = "web"
ROLE_KEY = "iam.amazonaws.com/role"
_POLICY_KEY = "iam.amazonaws.com/permitted"


def local_config(**options: Any) -> Settings:
    """The webhook's configuration for one pod on this machine: the STS emulator's region
    and two free ports, plus `options`."""
    defaults = {"region": MOTO_REGION, "sidecar_port": free_port(), "health_port": free_port()}
    return Settings(**(defaults | options))


def injected_pod(
    role_arn: str,
    config: Settings,
    *,
    annotations: Mapping[str, str] | None = None,
    pod_name: str = POD_NAME,
    auth_token: str | None = None,
    containers: tuple[str, ...] = ("app",),
) -> dict[str, Any]:
    """A pod annotated with `role_arn`, as the API server stores it after the webhook's patch."""
    pod: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod_name,
            "namespace": NAMESPACE,
            "uid": POD_UID if pod_name == POD_NAME else str(uuid.uuid4()),
            "annotations": {ROLE_KEY: role_arn, **(annotations or {})},
        },
        "spec": {
            "serviceAccountName": SERVICE_ACCOUNT,
            "containers": [{"name": name, "image": f"{name}:1"} for name in containers],
        },
    }
    namespace = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": NAMESPACE, "annotations": {_POLICY_KEY: ".*"}},
    }
    request = dict(pod_request(pod, namespace=NAMESPACE, dry_run=True))
    options: dict[str, Any] = {}
    if auth_token is not None:
        options["new_token"] = lambda: auth_token
    decision = decide_mutation(request, namespace, config, **options)
    if not decision.allowed:
        raise AssertionError(f"the webhook refused the test pod: {decision.message}")
    return apply_patch(pod, decision.patch or [])


def sidecar_env(
    workdir: Path,
    role_arn: str,
    config: Settings,
    environment: Mapping[str, str],
    **pod_options: Any,
) -> dict[str, str]:
    """The injected sidecar's env, resolved; `environment` is what the surroundings add."""
    pod = injected_pod(role_arn, config, **pod_options)
    return LocalPod(pod, environment=dict(environment), workdir=workdir).prepare()
