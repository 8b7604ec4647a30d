"""End to end in broker mode, as a kubelet would run it.

The real webhook (over TLS, `--credential-source broker`) patches a pod; the
pod is stored in the API stub; its sidecar runs from the patched spec with a
projected token the stub's TokenReview accepts; the sidecar asks the real
broker (over TLS, verified with SIDECRED_BROKER_CA), which asks moto; an app
with only its container's env sees the annotated role. Then the role is taken
out of the namespace's policy: a sidecar that fetches afterwards gets the
broker's 403 and says why in /readyz.
"""

from __future__ import annotations

import contextlib
import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sidecred.dev.demo import sidecar_readyz, start_sidecar_unprobed
from sidecred.dev.kube_stub import KubeApiStub
from sidecred.dev.local_pod import LocalPod
from sidecred.dev.processes import free_port, wait_until
from sidecred.dev.token_review import TokenAuthority
from sidecred.webhook.mutate import apply_patch
from tests.e2e.support import WHOAMI, environment
from tests.support.sts import MotoServer, start_moto, stop_moto
from tests.webhook_server.webhook_process import (
    WebhookProcess,
    decode_patch,
    post_review,
    review,
    start_webhook,
)

from .broker_process import BrokerProcess, start_broker
from .conftest import start_stub
from .pods import BASE, POLICY, READER, plain_pod

pytestmark = pytest.mark.slow

PERMITTED = "iam.amazonaws.com/permitted"


@dataclass
class BrokerCluster:
    stub: KubeApiStub
    authority: TokenAuthority
    sts: MotoServer
    broker: BrokerProcess
    webhook: WebhookProcess
    tmp: Path

    def admit(self, name: str) -> dict[str, Any]:
        """Send the pod to the webhook's /mutate and store the patched pod as the API server would."""
        pod = plain_pod(name, "shop", {"iam.amazonaws.com/role": READER}, "web")
        with self.webhook.client() as http:
            answer = post_review(http, "/mutate", review(pod))
        assert answer["allowed"], answer
        patched = apply_patch(copy.deepcopy(pod), decode_patch(answer))
        patched["metadata"].setdefault("labels", {})["sidecred.dev/injected"] = "true"
        return self.stub.put("pods", patched)

    def local_pod(self, pod: dict[str, Any]) -> LocalPod:
        return LocalPod(
            pod,
            environment=environment(self.sts.url, self.tmp),
            token_issuer=self.authority.local_pod_token,
            startup_timeout=60,
        )


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[BrokerCluster]:
    stub, authority = start_stub()
    sts = start_moto()
    ports = ("--sidecar-port", str(free_port()), "--health-port", str(free_port()))
    broker = start_broker(tmp_path / "broker", stub.url, sts.url, *ports)
    try:
        webhook = start_webhook(
            tmp_path / "webhook",
            stub.url,
            *("--credential-source", "broker", "--broker-url", str(broker.config.broker_url)),
            *("--broker-ca-file", str(broker.cert_dir / "ca.crt"), "--region", "us-east-1"),
            *ports,
        )
    except BaseException:
        broker.stop()
        raise
    world = BrokerCluster(stub, authority, sts, broker, webhook, tmp_path)
    yield world
    webhook.stop()
    broker.stop()
    stop_moto(sts)
    stub.stop()


def test_a_pod_gets_its_role_through_the_broker_and_loses_it_on_revocation(
    cluster: BrokerCluster,
) -> None:
    stored = cluster.admit("web-1")
    with cluster.local_pod(stored) as pod:
        result = pod.run_app("app", WHOAMI, timeout=60)
        assert result.exit_code == 0, result.stderr
        seen = json.loads(result.stdout.strip().splitlines()[-1])
        assert seen == {
            "Arn": "arn:aws:sts::123456789012:assumed-role/shop-reader/shop.web-1",
            "Provider": "container-role",
        }
        assert not [k for k in result.env if k.startswith("SIDECRED_")]
    assert (
        cluster.broker.metric("sidecred_broker_issuances_total", result="issued", role="pod") >= 1
    )

    second = cluster.admit("web-2")  # admitted while the role was permitted
    cluster.stub.set_annotations("shop", {PERMITTED: BASE + "other-.*"})
    # Its sidecar starts (or refreshes) after the revocation: the broker refuses it.
    pod = cluster.local_pod(second)
    with contextlib.ExitStack() as stack:
        stack.callback(pod.stop)
        sidecar = start_sidecar_unprobed(pod, stack)
        wait_until(lambda: "RoleNotPermitted" in sidecar_readyz(pod)[1], what="the refusal")
        status, body = sidecar_readyz(pod)
        assert sidecar.poll() is None  # not ready, still up, retrying
    cluster.stub.set_annotations("shop", POLICY)
    assert status == 503
    assert body.startswith("not ready: RoleNotPermitted: ")
    assert f'role "{READER}" is not permitted in namespace "shop"' in body
    assert f'{PERMITTED}="{BASE}other-.*"' in body
