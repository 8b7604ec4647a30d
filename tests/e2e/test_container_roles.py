"""A role per container, end to end, in both credential sources and both token modes.

The real webhook (over TLS) patches a pod with `app` (the pod's role), `backup` (its own
role) and `metrics` (`""`); the validating webhook admits the result; the pod is stored
in the API stub and run as a kubelet would (sidecred.dev.local_pod) with its sidecar
fetching from moto, directly (web-identity) or through the real broker (over TLS).
boto3 in each container, with only that container's env, reaches that container's role;
`metrics` has no credential env; one container's token opens no other's credentials.
"""

from __future__ import annotations

import contextlib
import copy
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sidecred.dev.demo import sidecar_readyz, start_sidecar_unprobed
from sidecred.dev.kube_stub import KubeApiStub
from sidecred.dev.local_pod import AppResult, LocalPod
from sidecred.dev.processes import free_port, wait_until
from sidecred.dev.token_review import TokenAuthority
from sidecred.webhook.mutate import apply_patch
from tests.broker.broker_process import BrokerProcess, start_broker
from tests.broker.conftest import start_stub
from tests.broker.pods import BASE, POLICY, READER, plain_pod
from tests.e2e.support import REPO, WHOAMI, environment
from tests.support.sts import MotoServer, start_moto, stop_moto
from tests.webhook_server.webhook_process import (
    WebhookProcess,
    decode_patch,
    post_review,
    review,
    start_webhook,
)

BACKUP = BASE + "shop-backup"
CONTAINER_ROLES = json.dumps({"backup": BACKUP, "metrics": ""})
SOURCES = ("web-identity", "broker")
TOKEN_MODES = ("file", "env")
PERMITTED = "iam.amazonaws.com/permitted"
# WHOAMI with its region given: metrics gets no credential env, and no region either.
WHOAMI_IN_REGION = [*WHOAMI[:-1], WHOAMI[-1].replace("os.environ.get('AWS_REGION')", "'us-east-1'")]


@dataclass
class World:
    stub: KubeApiStub
    authority: TokenAuthority
    sts: MotoServer
    broker: BrokerProcess
    webhooks: dict[str, WebhookProcess]  # by credential source
    tmp: Path

    def admit(
        self, source: str, name: str, token_mode: str, generate_name: str = ""
    ) -> dict[str, Any]:
        """The pod through /mutate and then /validate over TLS, stored as the API server would.

        With `generate_name` the pod is a controller's: the mutating webhook sees it without
        a name, and `name` is the one the API server then gives it (validation sees that).
        """
        annotations = {
            "iam.amazonaws.com/role": READER,
            "sidecred.dev/container-roles": CONTAINER_ROLES,
            "sidecred.dev/token-mode": token_mode,
        }
        pod = plain_pod(name, "shop", annotations, "web", ("app", "backup", "metrics"))
        if generate_name:
            pod["metadata"]["generateName"] = generate_name
            del pod["metadata"]["name"]
        with self.webhooks[source].client() as http:
            answer = post_review(http, "/mutate", review(pod))
            assert answer["allowed"], answer
            patched = apply_patch(copy.deepcopy(pod), decode_patch(answer))
            patched["metadata"]["name"] = name
            validated = post_review(http, "/validate", review(patched))
            assert validated["allowed"], validated
        patched["metadata"].setdefault("labels", {})["sidecred.dev/injected"] = "true"
        return self.stub.put("pods", patched)

    def local_pod(self, pod: dict[str, Any]) -> LocalPod:
        # PYTHONPATH: the sidecar of this checkout, whatever the interpreter has installed.
        surroundings = environment(self.sts.url, self.tmp) | {"PYTHONPATH": str(REPO)}
        return LocalPod(
            pod,
            environment=surroundings,
            token_issuer=self.authority.local_pod_token,
            startup_timeout=60,
        )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("roles")
    stub, authority = start_stub()
    sts = start_moto()
    ports = ("--sidecar-port", str(free_port()), "--health-port", str(free_port()))
    webhooks: dict[str, WebhookProcess] = {}
    broker = start_broker(tmp / "broker", stub.url, sts.url, *ports)
    try:
        webhooks["broker"] = start_webhook(
            tmp / "webhook-broker",
            stub.url,
            *("--credential-source", "broker", "--broker-url", str(broker.config.broker_url)),
            *("--broker-ca-file", str(broker.cert_dir / "ca.crt"), "--region", "us-east-1"),
            *ports,
        )
        webhooks["web-identity"] = start_webhook(
            tmp / "webhook-web-identity", stub.url, "--region", "us-east-1", *ports
        )
        yield World(stub, authority, sts, broker, webhooks, tmp)
    finally:
        for webhook in webhooks.values():
            webhook.stop()
        broker.stop()
        stop_moto(sts)
        stub.stop()


def whoami(result: AppResult) -> str:
    assert result.exit_code == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["Provider"] == "container-role"
    return str(seen["Arn"])


def token_of(result: AppResult) -> str:
    """The auth token a container holds: its token file's content, or its env value."""
    if "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE" in result.env:
        return Path(result.env["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"]).read_text().strip()
    return result.env["AWS_CONTAINER_AUTHORIZATION_TOKEN"]


def get(uri: str, token: str | None) -> tuple[int, dict[str, Any]]:
    headers = {} if token is None else {"Authorization": token}
    request = urllib.request.Request(uri, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


@pytest.mark.parametrize("token_mode", TOKEN_MODES)
@pytest.mark.parametrize("source", SOURCES)
def test_each_container_reaches_its_own_role_and_no_other(
    world: World, source: str, token_mode: str
) -> None:
    name = f"nightly-{source}-{token_mode}"
    stored = world.admit(source, name, token_mode)
    with world.local_pod(stored) as pod:
        app = pod.run_app("app", WHOAMI, timeout=60)
        backup = pod.run_app("backup", WHOAMI, timeout=60)
        metrics = pod.run_app("metrics", WHOAMI_IN_REGION, timeout=60)
        assert whoami(app) == f"arn:aws:sts::123456789012:assumed-role/shop-reader/shop.{name}"
        assert whoami(backup) == (
            f"arn:aws:sts::123456789012:assumed-role/shop-backup/shop.{name}.backup"
        )
        # metrics: no credential env at all, so the SDK finds nothing.
        assert metrics.exit_code != 0 and "NoCredentialsError" in metrics.stderr
        assert not [k for k in metrics.env if k.startswith(("AWS_CONTAINER_", "SIDECRED_"))]
        for result in (app, backup):
            assert not [k for k in result.env if k.startswith("SIDECRED_")]

        app_uri = app.env["AWS_CONTAINER_CREDENTIALS_FULL_URI"]
        backup_uri = backup.env["AWS_CONTAINER_CREDENTIALS_FULL_URI"]
        assert app_uri.endswith("/v1/credentials")
        assert backup_uri.endswith("/v1/containers/backup/credentials")
        app_token, backup_token = token_of(app), token_of(backup)
        assert app_token != backup_token
        # One container's token never opens another's credentials.
        assert get(backup_uri, app_token)[0] == 403
        assert get(app_uri, backup_token)[0] == 403
        assert get(backup_uri, None)[0] == 401
        status, body = get(backup_uri, backup_token)
        assert status == 200 and body["RoleArn"] == BACKUP
        if token_mode == "file":
            # Each token lives in its own volume; app does not mount backup's.
            app_mounts = {m["name"] for m in pod.pod["spec"]["containers"][0]["volumeMounts"]}
            assert app_mounts == {"sidecred-token"}


@pytest.mark.parametrize("source", SOURCES)
def test_a_controllers_pod_names_each_containers_session_after_the_pod(
    world: World, source: str
) -> None:
    """A Deployment's pod has no name at admission; each role's session still carries the
    name the pod got (`<ns>.<pod>.<container>`), so CloudTrail tells its replicas apart."""
    name = f"web-{source}-7d4b9c-x2k4q"
    stored = world.admit(source, name, "file", generate_name=f"web-{source}-7d4b9c-")
    with world.local_pod(stored) as pod:
        app = pod.run_app("app", WHOAMI, timeout=60)
        backup = pod.run_app("backup", WHOAMI, timeout=60)
    assert whoami(app) == f"arn:aws:sts::123456789012:assumed-role/shop-reader/shop.{name}"
    assert whoami(backup) == (
        f"arn:aws:sts::123456789012:assumed-role/shop-backup/shop.{name}.backup"
    )


def test_revoking_backups_role_refuses_it_through_the_broker_and_names_the_container(
    world: World,
) -> None:
    stored = world.admit("broker", "nightly-revoked", "file")  # admitted while permitted
    world.stub.set_annotations("shop", {PERMITTED: READER})
    try:
        pod = world.local_pod(stored)
        with contextlib.ExitStack() as stack:
            stack.callback(pod.stop)
            sidecar = start_sidecar_unprobed(pod, stack)
            # The pod's role is fetched and held; backup's is refused.
            wait_until(
                lambda: (
                    "RoleNotPermitted" in (body := sidecar_readyz(pod)[1])
                    and "CredentialsNotReady" not in body
                ),
                what="the refusal",
            )
            status, body = sidecar_readyz(pod)
            assert sidecar.poll() is None  # not ready, still up, retrying
    finally:
        world.stub.set_annotations("shop", POLICY)
    assert status == 503 and body.startswith("not ready: RoleNotPermitted: "), body
    assert "pod role" not in body  # only backup's role is not ready
    assert "backup" in body and f'role "{BACKUP}" is not permitted in namespace "shop"' in body
    assert 'container "backup" (sidecred.dev/container-roles)' in body
