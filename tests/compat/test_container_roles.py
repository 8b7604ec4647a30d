"""Real AWS SDK clients in a pod with a role per container (sidecred.dev/container-roles).

One pod per token mode, patched by the webhook's own decision and run as a kubelet
would (sidecred.dev.local_pod, source web-identity against moto): `app` uses the
pod's role, `backup` its own, `metrics` none. Every client runs with only `app`'s or
`backup`'s env and must reach that container's role (or, too old for the token mode,
get nothing); with `metrics`' env no client gets credentials.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sidecred.dev.local_pod import LocalPod
from sidecred.pods.settings import Settings
from sidecred.webhook.decide import decide_mutation, decide_validation
from sidecred.webhook.mutate import apply_patch
from sidecred.webhook.review import pod_request
from tests.compat.clients import REPO, TOKEN_MODES, Client, outcome
from tests.support.injected_sidecar import local_config
from tests.support.sts import MOTO_ACCOUNT_ID, MOTO_REGION, MotoServer, create_role

# boto3, the AWS CLI v1 and v2, JS v3, Go v1 and v2: each SDK family's current default chain.
CLIENT_IDS = ["boto3-current", "awscli-v1", "awscli-v2-debian", "js-v3", "go-v1-debian", "go-v2-debian"]  # fmt: skip
CONTAINERS = ("app", "backup", "metrics")
APP_ROLE, BACKUP_ROLE = "compat-app", "compat-backup"


def roles_pod(token_mode: str, config: Settings) -> dict[str, Any]:
    """The pod as the API server stores it after the webhook's mutation (and validation)."""
    base = f"arn:aws:iam::{MOTO_ACCOUNT_ID}:role/"
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"nightly-{token_mode}",
            "namespace": "shop",
            "annotations": {
                "iam.amazonaws.com/role": base + APP_ROLE,
                "sidecred.dev/container-roles": f'{{"backup": "{base}{BACKUP_ROLE}", "metrics": ""}}',
                "sidecred.dev/token-mode": token_mode,
            },
        },
        "spec": {"containers": [{"name": name, "image": name} for name in CONTAINERS]},
    }
    namespace = {"metadata": {"name": "shop", "annotations": {"iam.amazonaws.com/permitted": base + "compat-.*"}}}  # fmt: skip
    decision = decide_mutation(pod_request(pod, namespace="shop"), namespace, config)
    assert decision.allowed, decision.message
    patched = apply_patch(pod, decision.patch or [])
    validation = decide_validation(pod_request(patched, namespace="shop"), namespace, config)
    assert validation.allowed, validation.message
    return patched


@pytest.fixture(scope="module")
def pods(
    sts: MotoServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, LocalPod]]:
    create_role(sts.url, APP_ROLE)
    create_role(sts.url, BACKUP_ROLE)
    running: dict[str, LocalPod] = {}
    try:
        for mode in TOKEN_MODES:
            config = local_config(token_mode=mode)
            workdir = tmp_path_factory.mktemp(f"pod-{mode}")
            surroundings = {
                "AWS_ENDPOINT_URL_STS": sts.url,
                "AWS_EC2_METADATA_DISABLED": "true",
                "PYTHONPATH": str(REPO),  # the sidecar of this checkout
            }
            pod = LocalPod(roles_pod(mode, config), environment=surroundings, workdir=workdir)
            running[mode] = pod.__enter__()
        yield running
    finally:
        for pod in running.values():
            pod.__exit__(None, None, None)


def container_env(pod: LocalPod, name: str, workdir: Path, sts_url: str) -> dict[str, str]:
    """Only the container's own env from the patched spec, and the test's plumbing."""
    home = workdir / "home"
    home.mkdir(parents=True, exist_ok=True)
    (workdir / "aws-config").touch()
    (workdir / "aws-credentials").touch()
    container = next(c for c in pod.pod["spec"]["containers"] if c["name"] == name)
    own = {k: v for k, v in pod.env_for(container).items() if k != "PYTHONPATH"}
    return {
        **own,
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "HOME": str(home),
        "AWS_CONFIG_FILE": str(workdir / "aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(workdir / "aws-credentials"),
        "AWS_PAGER": "",
        "AWS_REGION": MOTO_REGION,
        "AWS_DEFAULT_REGION": MOTO_REGION,
        "AWS_ENDPOINT_URL_STS": sts_url,
    }


@pytest.fixture
def pod(pods: dict[str, LocalPod], token_mode: str) -> LocalPod:
    """The running pod of the test's token mode."""
    return pods[token_mode]


@pytest.mark.parametrize("container", ["app", "backup"])
@pytest.mark.parametrize("token_mode", TOKEN_MODES)
@pytest.mark.parametrize("client_id", CLIENT_IDS)
def test_sdk_reaches_its_containers_own_role(
    client: Client, token_mode: str, container: str, sts: MotoServer, pod: LocalPod, tmp_path: Path
) -> None:
    version = client.read_version()
    run = client.run(sts.url, container_env(pod, container, tmp_path, sts.url), tmp_path)
    detail = outcome(run)
    role, session = (APP_ROLE, f"shop.{pod.identity.name}")
    if container == "backup":
        role, session = BACKUP_ROLE, f"shop.{pod.identity.name}.backup"
    if client.expected_to_work(token_mode, version):
        assert run.returncode == 0, detail
        assert run.stdout.strip() == f"arn:aws:sts::{MOTO_ACCOUNT_ID}:assumed-role/{role}/{session}", detail  # fmt: skip
    else:
        assert run.returncode != 0 and "compat-" not in run.stdout, detail


@pytest.mark.parametrize("token_mode", TOKEN_MODES)
@pytest.mark.parametrize("client_id", ["boto3-current", "js-v3", "go-v2-debian"])
def test_a_container_mapped_to_nothing_gets_no_credentials(
    client: Client, sts: MotoServer, pod: LocalPod, tmp_path: Path
) -> None:
    env = container_env(pod, "metrics", tmp_path, sts.url)
    assert not [k for k in env if k.startswith("AWS_CONTAINER_")]
    run = client.run(sts.url, env, tmp_path)
    assert run.returncode != 0 and "compat-" not in run.stdout, run.stdout + run.stderr
    assert "credential" in run.stderr.lower(), run.stderr[-2000:]
