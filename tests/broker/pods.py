"""Pods and namespaces as the broker reads them: injected, broker-mode, as plain dicts."""

from __future__ import annotations

import uuid
from typing import Any

from sidecred.sidecar.config import ENV_CREDENTIAL_SOURCE, ENV_ROLE_ARN
from sidecred.webhook.config import WebhookConfig

ACCOUNT = "123456789012"  # moto's default account, so moto answers for these roles
BASE = f"arn:aws:iam::{ACCOUNT}:role/"
READER = BASE + "shop-reader"
POLICY = {"iam.amazonaws.com/permitted": BASE + "shop-.*"}
CONFIG = WebhookConfig(base_role_arn=BASE)


def broker_pod(
    name: str = "web-1",
    namespace: str = "shop",
    role: str | None = READER,
    *,
    service_account: str = "web",
    uid: str | None = None,
    annotations: dict[str, str] | None = None,
    sidecar_env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """An injected pod whose `sidecred` container uses the broker source for `role`."""
    notes = dict(annotations or {})
    env = {ENV_CREDENTIAL_SOURCE: "broker"}
    if role is not None:
        notes["iam.amazonaws.com/role"] = role
        env[ENV_ROLE_ARN] = role if role.startswith("arn:") else BASE + role
    env.update(sidecar_env or {})
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": uid or str(uuid.uuid4()),
            "labels": {"sidecred.dev/injected": "true"},
            "annotations": notes,
        },
        "spec": {
            "serviceAccountName": service_account,
            "initContainers": [
                {
                    "name": "sidecred",
                    "image": CONFIG.sidecar_image,
                    "command": ["sidecred", "sidecar"],
                    "restartPolicy": "Always",
                    "env": [{"name": k, "value": v} for k, v in env.items()],
                }
            ],
            "containers": [{"name": "app", "image": "app"}],
        },
        "status": {"phase": "Running"},
    }


def namespace(name: str = "shop", annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": name,
            "annotations": dict(POLICY if annotations is None else annotations),
        },
    }
