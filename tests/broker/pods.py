"""Pods as the broker reads them: admitted by the webhook's own mutation, as plain dicts."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from typing import Any

from sidecred.certs.generate import build_ca, certificate_pem
from sidecred.pods.settings import Settings
from sidecred.webhook.decide import decide_mutation
from sidecred.webhook.mutate import apply_patch
from sidecred.webhook.review import pod_request

ACCOUNT = "123456789012"  # moto's default account, so moto answers for these roles
BASE = f"arn:aws:iam::{ACCOUNT}:role/"
READER = BASE + "shop-reader"
POLICY = {"iam.amazonaws.com/permitted": BASE + "shop-.*"}
REGION = "us-east-1"


def broker_config(ca_pem: str, url: str = "https://localhost:8444", **changes: Any) -> Settings:
    """The options a webhook injecting broker-mode sidecars and its broker share."""
    config = Settings(
        base_role_arn=BASE,
        credential_source="broker",
        broker_url=url,
        broker_ca=ca_pem,
        region=REGION,
    )
    return dataclasses.replace(config, **changes)


# For tests that run no broker process: a real CA certificate, generated once.
CONFIG = broker_config(
    certificate_pem(build_ca("broker-test-ca", dt.datetime.now(dt.UTC), 1).certificate).decode()
)


def namespace(name: str = "shop", annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": name,
            "annotations": dict(POLICY if annotations is None else annotations),
        },
    }


def plain_pod(
    name: str,
    namespace_name: str,
    annotations: dict[str, str],
    service_account: str,
    containers: tuple[str, ...] = ("app",),
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace_name, "annotations": annotations},
        "spec": {
            "serviceAccountName": service_account,
            "containers": [{"name": c, "image": c, "command": [c]} for c in containers],
        },
    }


def broker_pod(
    name: str = "web-1",
    namespace_name: str = "shop",
    role: str | None = READER,
    *,
    config: Settings = CONFIG,
    service_account: str = "web",
    uid: str | None = None,
    annotations: dict[str, str] | None = None,
    admitted_under: dict[str, str] | None = None,
    containers: tuple[str, ...] = ("app",),
) -> dict[str, Any]:
    """A pod as the API server stores it after the webhook (with `config`) admitted it.

    `admitted_under` is the namespace policy at admission (default POLICY). Without
    a role the webhook adds nothing; the label is set anyway, as a label is only a
    hint that the broker must not trust.
    """
    notes = dict(annotations or {})
    if role is not None:
        notes["iam.amazonaws.com/role"] = role
    pod = plain_pod(name, namespace_name, notes, service_account, containers)
    request = pod_request(pod, namespace=namespace_name)
    decision = decide_mutation(request, namespace(namespace_name, admitted_under), config)
    if not decision.allowed:
        raise AssertionError(f"the webhook refused the test pod: {decision.message}")
    admitted = apply_patch(pod, decision.patch or [])
    metadata = admitted["metadata"]
    metadata.setdefault("labels", {})["sidecred.dev/injected"] = "true"
    metadata["uid"] = uid or str(uuid.uuid4())
    admitted["status"] = {"phase": "Running"}
    return admitted
