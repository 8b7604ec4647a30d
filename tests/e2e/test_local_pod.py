"""The local pod runner: pure pieces, then real sidecars from patched pods against moto."""

from __future__ import annotations

import base64
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sidecred.dev.local_pod import (
    GENERATE_NAME_ALPHABET,
    LocalPod,
    LocalPodError,
    PodIdentity,
    container_env,
    pod_identity,
    rewrite_mount_paths,
    service_account_token,
)
from sidecred.sidecar import config as contract
from tests.e2e.support import (
    ACCOUNT,
    EXAMPLES,
    ROLE_ARN,
    STATIC_KEYS,
    WHOAMI,
    clean_env,
    environment,
    patched_example,
)
from tests.support.injected_sidecar import local_config
from tests.support.sts import MOTO_REGION, MotoServer, free_port

pytestmark = pytest.mark.slow

IDENTITY = PodIdentity("web-7d9f", "shop", "0f0e0d0c-0000-4000-8000-000000000001", "web")


# --- pure pieces -----------------------------------------------------------------


def test_generate_name_pod_gets_a_generated_name_and_uid() -> None:
    pod = {"metadata": {"generateName": "shop-reader-7d9f-", "namespace": "shop"}, "spec": {}}
    identity = pod_identity(pod, rng=random.Random(7))
    suffix = identity.name.removeprefix("shop-reader-7d9f-")
    assert len(suffix) == 5 and set(suffix) <= set(GENERATE_NAME_ALPHABET)
    assert identity.namespace == "shop"
    assert identity.service_account == "default"
    assert identity == pod_identity(pod, rng=random.Random(7))  # randomness is injected
    assert identity.uid != pod_identity(pod, rng=random.Random(8)).uid


def test_pod_without_name_or_generate_name_is_refused() -> None:
    with pytest.raises(LocalPodError, match="neither metadata"):
        pod_identity({"metadata": {}, "spec": {}})


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("/var/run/sidecred/token", "/tmp/v/tok/token"),
        ("/var/run/sidecred", "/tmp/v/tok"),
        ("/var/run/sidecredX/token", "/var/run/sidecredX/token"),  # not under the mount
        ("file:/var/run/sidecred/token", "file:/var/run/sidecred/token"),  # only leading paths
        ("/var/run/secrets/sidecred/serviceaccount/token", "/tmp/v/sa/token"),  # nested wins
        ("/var/run/secrets/other", "/tmp/v/secrets/other"),
    ],
)
def test_rewrite_mount_paths(value: str, expected: str) -> None:
    mounts = {
        "/var/run/sidecred": Path("/tmp/v/tok"),
        "/var/run/secrets": Path("/tmp/v/secrets"),
        "/var/run/secrets/sidecred/serviceaccount/": Path("/tmp/v/sa"),
    }
    assert rewrite_mount_paths(value, mounts) == expected


def test_paths_inside_a_json_env_value_are_mapped_too() -> None:
    """SIDECRED_CONTAINER_ROLES names each container's token file inside its JSON."""
    mounts = {"/var/run/sidecred": Path("/tmp/tok"), "/var/run/sidecred/backup": Path("/tmp/b")}
    roles = {
        "backup": {"role_arn": "arn:x", "session_name": "/var/run/sidecred", "token_file": "/var/run/sidecred/backup/token"},
        "report": {"token_file": "/elsewhere/token", "list": ["/var/run/sidecred/x"], "n": 1},
    }  # fmt: skip
    container = {"name": "sidecred", "env": [{"name": "ROLES", "value": json.dumps(roles)}]}
    env = container_env({"spec": {}}, container, IDENTITY, mounts)
    assert json.loads(env["ROLES"]) == {
        "backup": {"role_arn": "arn:x", "session_name": "/tmp/tok", "token_file": "/tmp/b/token"},
        "report": {"token_file": "/elsewhere/token", "list": ["/tmp/tok/x"], "n": 1},
    }
    # Unchanged JSON, and text that only looks like JSON, are kept as they are.
    for value in ('{"a": "b"}', "{not json /var/run/sidecred"):
        container["env"] = [{"name": "X", "value": value}]
        assert container_env({"spec": {}}, container, IDENTITY, mounts)["X"] == value


def test_container_env_fills_field_refs_and_maps_only_own_mounts() -> None:
    pod = {"metadata": {"labels": {"app": "web"}}, "spec": {}}
    container = {
        "name": "app",
        "env": [
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
            {"name": "SA", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "TOKEN", "value": "/var/run/sidecred/token"},
            {"name": "SA_TOKEN", "value": "/var/run/secrets/sidecred/serviceaccount/token"},
            {"name": "EMPTY"},
        ],
    }
    env = container_env(pod, container, IDENTITY, {"/var/run/sidecred": Path("/tmp/tok")})
    assert env == {
        "POD": "web-7d9f",
        "NS": "shop",
        "UID": IDENTITY.uid,
        "SA": "web",
        "APP": "web",
        "TOKEN": "/tmp/tok/token",
        # Not mounted in this container, so not reachable: left as the pod spec says.
        "SA_TOKEN": "/var/run/secrets/sidecred/serviceaccount/token",
        "EMPTY": "",
    }


@pytest.mark.parametrize(
    ("container", "message"),
    [
        ({"name": "a", "envFrom": [{"configMapRef": {"name": "x"}}]}, "envFrom"),
        (
            {"name": "a", "env": [{"name": "K", "valueFrom": {"secretKeyRef": {"name": "s"}}}]},
            "secretKeyRef",
        ),
        (
            {"name": "a", "env": [{"name": "K", "valueFrom": {"fieldRef": {"fieldPath": "x.y"}}}]},
            "'x.y'",
        ),
    ],
)
def test_container_env_refuses_what_it_cannot_fill(container: dict, message: str) -> None:
    with pytest.raises(LocalPodError, match=message):
        container_env({"metadata": {}}, container, IDENTITY, {})


def test_service_account_token_is_jwt_shaped_with_pod_claims() -> None:
    token = service_account_token(IDENTITY, "sts.amazonaws.com", 3600, now=1_700_000_000)
    header, claims, signature = token.split(".")
    assert json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["alg"]
    payload = json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))
    assert payload["sub"] == "system:serviceaccount:shop:web"
    assert payload["aud"] == ["sts.amazonaws.com"]
    assert payload["exp"] - payload["iat"] == 3600
    assert payload["kubernetes.io"]["pod"] == {"name": "web-7d9f", "uid": IDENTITY.uid}
    assert signature and "\n" not in token


def test_environment_may_not_redefine_pod_env() -> None:
    config = local_config()
    pod = patched_example("pod-allowed.yaml", config)
    with pytest.raises(LocalPodError, match="the environment sets HOME, which container 'app'"):
        LocalPod(pod, environment={"HOME": "/elsewhere"})


# --- real sidecars from patched pods -----------------------------------------------


@pytest.mark.parametrize("sidecar_mode", contract.SIDECAR_MODES)
@pytest.mark.parametrize("token_mode", contract.TOKEN_MODES)
def test_app_gets_the_annotated_role(
    token_mode: str, sidecar_mode: str, moto_sts_module: MotoServer, tmp_path: Path
) -> None:
    """A Deployment's pod (generateName) through decide_mutation, run as a kubelet would."""
    config = local_config(token_mode=token_mode, sidecar_mode=sidecar_mode)
    pod = patched_example("pod-shop-reader.yaml", config)
    with LocalPod(pod, environment=environment(moto_sts_module.url, tmp_path)) as running:
        result = running.run_app("app", WHOAMI)
        identity = running.identity
        token_dir = running.volumes.get("sidecred-token")

    assert result.exit_code == 0, result.stderr
    seen = json.loads(result.stdout)
    assert identity.name.startswith("shop-reader-")
    session = f"shop.{identity.name}"
    assert seen == {
        "Arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/shop-reader/{session}",
        "Provider": "container-role",
    }
    # Only the app container's own env: no keys, no sidecar settings, its own region kept.
    assert not [k for k in result.env if k in STATIC_KEYS or k.startswith("SIDECRED_")]
    assert result.env["AWS_REGION"] == "eu-west-1"
    assert result.env["AWS_CONTAINER_CREDENTIALS_FULL_URI"] == contract.credentials_uri(
        config.sidecar_port
    )
    if token_mode == "file":
        assert token_dir is not None
        assert result.env["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"] == str(token_dir / "token")
        assert "AWS_CONTAINER_AUTHORIZATION_TOKEN" not in result.env
    else:
        assert len(result.env["AWS_CONTAINER_AUTHORIZATION_TOKEN"]) >= 43
        assert "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE" not in result.env
    assert not any("serviceaccount" in value for value in result.env.values())


def test_pod_printed_by_sidecred_check_runs(moto_sts_module: MotoServer, tmp_path: Path) -> None:
    sidecar_port, health_port = free_port(), free_port()
    checked = subprocess.run(
        [
            *(sys.executable, "-m", "sidecred.cli", "check"),
            *("--pod", str(EXAMPLES / "pod-allowed.yaml")),
            *("--namespace", str(EXAMPLES / "namespace-shop.yaml")),
            *("--sidecar-port", str(sidecar_port), "--health-port", str(health_port)),
            *("--region", MOTO_REGION),
        ],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=60,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr
    pod = yaml.safe_load(checked.stdout.split("\n---\n", 1)[1])
    with LocalPod(pod, environment=environment(moto_sts_module.url, tmp_path)) as running:
        result = running.run_app("app", WHOAMI)
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["Arn"] == (
        f"arn:aws:sts::{ACCOUNT}:assumed-role/shop-reader/shop.shop-reader"
    )
    assert pod["metadata"]["annotations"]["sidecred.dev/injected"] == ROLE_ARN


def test_sidecar_that_exits_fails_start_with_its_log(tmp_path: Path) -> None:
    config = local_config()
    pod = patched_example("pod-allowed.yaml", config)
    sidecar = pod["spec"]["initContainers"][0]
    for entry in sidecar["env"]:
        if entry["name"] == contract.ENV_SESSION_DURATION:
            entry["value"] = "ten minutes"  # the sidecar refuses to start
    runner = LocalPod(pod, environment=environment("http://127.0.0.1:9", tmp_path))
    with pytest.raises(LocalPodError) as failure, runner:
        pass
    message = str(failure.value)
    assert "exited with code 2 before its startupProbe passed" in message
    assert "SIDECRED_SESSION_DURATION='ten minutes'" in message  # the log tail says why
    assert runner.sidecar_process is None


def test_probe_that_never_passes_fails_with_the_sts_error(tmp_path: Path) -> None:
    config = local_config()
    pod = patched_example("pod-allowed.yaml", config)
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens: STS is unreachable
    runner = LocalPod(pod, environment=environment(closed, tmp_path), startup_timeout=3)
    with pytest.raises(LocalPodError) as failure, runner:
        pass
    message = str(failure.value)
    assert "startupProbe GET" in message and "did not pass within 3 s" in message
    assert "last answer: 503" in message
    assert "sidecar log tail:" in message and closed in message
    assert runner.sidecar_process is None
