"""Attacks on what the canonical sidecar no longer compares: none changes who gets which role.

For each sidecar field left out of the comparison (so that upgrades and other
webhooks keep working), a forger sets it to a value of their choosing on the
sidecar the real webhook injected. The real webhook over TLS admits the pod, and
the sidecar, started from that pod spec as a kubelet would, gets credentials for
the annotated role and no other, with the session name `<namespace>.<pod>`: STS
(moto) says which role and session it issued to.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sidecred.dev.local_pod import LocalPod
from sidecred.dev.processes import free_port
from sidecred.webhook.mutate import apply_patch
from tests.e2e.support import ACCOUNT, WHOAMI, environment
from tests.support.sts import MOTO_REGION, MotoServer
from tests.webhook_server.conftest import webhook_on_stub
from tests.webhook_server.webhook_process import (
    WebhookProcess,
    decode_patch,
    pod,
    post_review,
    review,
)


@pytest.fixture(scope="module")
def webhook(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebhookProcess]:
    flags = ("--region", MOTO_REGION, "--sidecar-port", str(free_port()))
    flags += ("--health-port", str(free_port()))
    with webhook_on_stub(tmp_path_factory.mktemp("webhook"), *flags) as process:
        yield process


def sidecar(obj: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in obj["spec"]["initContainers"] if c["name"] == "sidecred")


def set_env(name: str, value: str) -> Callable[[dict[str, Any]], None]:
    def forge(obj: dict[str, Any]) -> None:
        env = sidecar(obj)["env"]
        env[:] = [e for e in env if e["name"] != name] + [{"name": name, "value": value}]

    return forge


def to_containers(obj: dict[str, Any]) -> None:
    """The sidecar moved from a native sidecar to a plain container (container mode's place)."""
    moved = sidecar(obj)
    obj["spec"]["initContainers"].remove(moved)
    moved.pop("restartPolicy")
    obj["spec"]["containers"].insert(0, moved)


def token_lifetime(obj: dict[str, Any]) -> None:
    for volume in obj["spec"]["volumes"]:
        if volume["name"] == "sidecred-sa-token":
            volume["projected"]["sources"][0]["serviceAccountToken"]["expirationSeconds"] = 600


FORGERIES: dict[str, Callable[[dict[str, Any]], None]] = {
    "region": set_env("SIDECRED_REGION", "ap-southeast-2"),
    "session length": set_env("SIDECRED_SESSION_DURATION", "900"),
    "drain time": set_env("SIDECRED_DRAIN_SECONDS", "0"),
    "sidecar mode": set_env("SIDECRED_SIDECAR_MODE", "container"),
    "env that redirects nothing": set_env("TZ", "Pacific/Chatham"),
    "resources": lambda o: sidecar(o).update(resources={"limits": {"cpu": "2"}}),
    "pull policy": lambda o: sidecar(o).update(imagePullPolicy="Never"),
    "probe timings": lambda o: sidecar(o)["startupProbe"].update(periodSeconds=2),
    "terminationMessagePolicy": lambda o: sidecar(o).update(terminationMessagePolicy="File"),
    "stricter security context": lambda o: sidecar(o)["securityContext"].update(
        runAsUser=70001, runAsGroup=70001
    ),
    "placement": to_containers,
    "token lifetime": token_lifetime,
    "image tag": lambda o: sidecar(o).update(image="ghcr.io/sidecred/sidecred-sidecar:9.9.9"),
}


@pytest.mark.parametrize("forge", FORGERIES.values(), ids=FORGERIES)
def test_a_forged_uncompared_field_still_gets_only_the_annotated_role(
    forge: Callable[[dict[str, Any]], None],
    webhook: WebhookProcess,
    moto_sts_module: MotoServer,
    tmp_path: Path,
) -> None:
    created = pod("shop-reader")
    with webhook.client() as http:
        injected = apply_patch(created, decode_patch(post_review(http, "/mutate", review(created))))
        forged = copy.deepcopy(injected)
        forge(forged)
        assert forged != injected
        answer = post_review(http, "/validate", review(forged))
    assert answer["allowed"], answer.get("status")

    with LocalPod(forged, environment=environment(moto_sts_module.url, tmp_path)) as running:
        result = running.run_app("app", WHOAMI)
        name = running.identity.name
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["Arn"] == (
        f"arn:aws:sts::{ACCOUNT}:assumed-role/shop-reader/shop.{name}"
    )
