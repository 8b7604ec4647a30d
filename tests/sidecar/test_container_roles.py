"""A role per container: each path answers only to its own token, with its own role.

In-process against the endpoints with injected caches, then the real sidecar
process against moto with the env the contract describes (SIDECRED_CONTAINER_ROLES).
"""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sidecred.dev.processes import wait_until
from sidecred.sidecar.cache import CredentialCache
from sidecred.sidecar.credentials import Credentials, SourceError
from sidecred.sidecar.endpoint import CredentialEndpoint, HealthEndpoint
from sidecred.sidecar.server import Request
from tests.sidecar.sidecar_process import (
    ROLE_ARN,
    WAIT_SECONDS,
    SidecarProcess,
    app_environment,
    http_get,
    run_cli,
    sidecar_env,
)
from tests.support.scripted_sts import access_denied, success_xml
from tests.support.sts import create_role

POD_TOKEN = "pod-token-" + "p" * 32
BACKUP_TOKEN = "backup-token-" + "b" * 32
AUDIT_TOKEN = "audit-token-" + "a" * 32
BACKUP_ARN = "arn:aws:iam::123456789012:role/backup"
AUDIT_ARN = "arn:aws:iam::123456789012:role/audit"
NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)


def cache_with(role_arn: str, key: str | None) -> CredentialCache:
    cache = CredentialCache(role_arn, clock=lambda: NOW)
    if key is not None:
        expires = NOW + timedelta(hours=1)
        cache.store(Credentials(key, "secret-" + key, "session", expires, "1", role_arn), NOW)
    return cache


def endpoints(pod: bool = True, audit_key: str | None = "ASIAAUDIT") -> CredentialEndpoint:
    containers = {
        "backup": (cache_with(BACKUP_ARN, "ASIABACKUP"), BACKUP_TOKEN),
        "audit": (cache_with(AUDIT_ARN, audit_key), AUDIT_TOKEN),
    }
    pod_cache = cache_with(ROLE_ARN, "ASIAPOD") if pod else None
    return CredentialEndpoint(
        pod_cache, POD_TOKEN if pod else None, lambda: NOW, containers=containers
    )


def get(path: str, token: str | None, method: str = "GET") -> Request:
    return Request(method, path, "HTTP/1.1", {"authorization": token} if token else {})


def answer(endpoint: CredentialEndpoint, path: str, token: str | None) -> tuple[int, dict]:
    response = endpoint(get(path, token))
    return response.status, json.loads(response.body)


@pytest.mark.parametrize(
    ("path", "token", "key"),
    [
        ("/v1/credentials", POD_TOKEN, "ASIAPOD"),
        ("/v1/containers/backup/credentials", BACKUP_TOKEN, "ASIABACKUP"),
        ("/v1/containers/audit/credentials?x=1", AUDIT_TOKEN, "ASIAAUDIT"),
    ],
)
def test_each_path_serves_its_own_role_to_its_own_token(path, token, key):
    status, body = answer(endpoints(), path, token)
    assert status == 200 and body["AccessKeyId"] == key


@pytest.mark.parametrize(
    ("path", "token"),
    [
        ("/v1/credentials", BACKUP_TOKEN),
        ("/v1/credentials", AUDIT_TOKEN),
        ("/v1/containers/backup/credentials", POD_TOKEN),
        ("/v1/containers/backup/credentials", AUDIT_TOKEN),
        ("/v1/containers/audit/credentials", BACKUP_TOKEN),
    ],
)
def test_another_roles_token_is_refused_and_reveals_nothing(path, token):
    response = endpoints()(get(path, token))
    assert response.status == 403
    assert json.loads(response.body)["Code"] == "Forbidden"
    assert b"ASIA" not in response.body and b"secret" not in response.body


@pytest.mark.parametrize(
    "path",
    [
        "/v1/containers/web/credentials",
        "/v1/containers/backup",
        "/v1/containers/backup/credentials/",
        "/v1/containers//credentials",
        "/v1/containers/backup/../audit/credentials",
    ],
)
def test_unknown_container_paths_are_404_for_every_token(path):
    endpoint = endpoints()
    for token in (POD_TOKEN, BACKUP_TOKEN, AUDIT_TOKEN, None):
        status, body = answer(endpoint, path, token)
        assert status == 404 and body["Code"] == "NotFound"


def test_container_paths_take_only_get():
    response = endpoints()(get("/v1/containers/backup/credentials", BACKUP_TOKEN, "POST"))
    assert response.status == 405 and ("Allow", "GET") in response.headers


def test_without_a_pod_role_the_pod_path_says_so():
    endpoint = endpoints(pod=False)
    for token in (BACKUP_TOKEN, None):
        status, body = answer(endpoint, "/v1/credentials", token)
        assert status == 404 and body["Code"] == "NoPodRole"
        assert "no pod-level role" in body["Message"]
    assert answer(endpoint, "/v1/containers/backup/credentials", BACKUP_TOKEN)[0] == 200


def test_readyz_waits_for_every_role_and_names_the_ones_not_ready():
    endpoint = endpoints(audit_key=None)
    health = HealthEndpoint(endpoint, lambda: NOW)
    response = health(get("/readyz", None))
    text = response.body.decode()
    assert response.status == 503
    assert text.startswith("not ready: CredentialsNotReady: container audit role " + AUDIT_ARN)
    assert "backup" not in text and "pod role" not in text

    endpoint.routes["/v1/containers/audit/credentials"].cache.record_failure(
        SourceError("AccessDenied", "Not authorized", refused=True)
    )
    endpoint.routes["/v1/credentials"].cache.record_failure(
        SourceError("AccessDenied", "Not authorized", refused=True)
    )
    text = health(get("/readyz", None)).body.decode()
    assert text.startswith(f"not ready: AccessDenied: pod role {ROLE_ARN}: AccessDenied:")
    assert f"; container audit role {AUDIT_ARN}: AccessDenied: Not authorized" in text
    assert "still serving the credentials held" in text  # the pod's role holds valid ones


def test_readyz_when_every_role_is_ready_is_one_line_naming_each():
    response = HealthEndpoint(endpoints(), lambda: NOW)(get("/readyz", None))
    assert response.status == 200
    assert response.body.decode() == (
        f"ready: credentials for {ROLE_ARN},backup={BACKUP_ARN},audit={AUDIT_ARN} "
        "valid until 2026-01-01T13:00:00Z\n"
    )


def test_metrics_have_a_bounded_role_label_and_no_names():
    endpoint = endpoints(audit_key=None)
    endpoint(get("/v1/credentials", POD_TOKEN))
    endpoint(get("/v1/containers/backup/credentials", BACKUP_TOKEN))
    endpoint(get("/v1/containers/backup/credentials", POD_TOKEN))
    endpoint(get("/v1/containers/nope/credentials", POD_TOKEN))
    text = HealthEndpoint(endpoint, lambda: NOW)(get("/metrics", None)).body.decode()
    assert 'sidecred_credential_requests_total{role="pod",code="200"} 1' in text
    assert 'sidecred_credential_requests_total{role="container",code="200"} 1' in text
    assert 'sidecred_credential_requests_total{role="container",code="403"} 1' in text
    assert 'sidecred_credential_requests_total{role="container",code="404"} 1' in text
    assert 'sidecred_ready{role="pod"} 1' in text
    assert 'sidecred_ready{role="container"} 0' in text  # audit has none yet
    assert 'sidecred_credentials_expiry_timestamp_seconds{role="container"} 0' in text
    labels = {line.split("{", 1)[1].split("}")[0] for line in text.splitlines() if "{" in line}
    assert all(
        label.startswith('role="pod"') or label.startswith('role="container"') for label in labels
    )
    assert "backup" not in text and "audit" not in text and "arn:" not in text


# --- the real process ----------------------------------------------------------------------
def container_roles_env(tmp: Path, sts_url: str, token_mode: str, pod_role: bool) -> dict[str, str]:
    env = sidecar_env(tmp, sts_url, token_mode=token_mode)
    roles = {}
    for container, arn in (("backup", BACKUP_ARN), ("audit", AUDIT_ARN)):
        entry = {"role_arn": arn, "session_name": f"shop.web-7d4b9c-x2x9q.{container}"}
        if token_mode == "file":
            directory = tmp / f"sidecred-token-{container}"
            directory.mkdir()
            entry["token_file"] = str(directory / "token")
        else:
            entry["auth_token"] = f"{container}-webhook-token-" + "z" * 24
        roles[container] = entry
    env["SIDECRED_CONTAINER_ROLES"] = json.dumps(roles)
    if not pod_role:
        del env["SIDECRED_ROLE_ARN"]
        env.pop("SIDECRED_TOKEN_FILE", None)
        env.pop("SIDECRED_AUTH_TOKEN", None)
    return env


def container_token(sidecar: SidecarProcess, container: str) -> str:
    entry = json.loads(sidecar.env["SIDECRED_CONTAINER_ROLES"])[container]
    return entry.get("auth_token") or Path(entry["token_file"]).read_text()


def caller_arn(sidecar: SidecarProcess, tmp: Path, path: str, token: str) -> str:
    """What a real boto3 app reaches with this path and token (its assumed-role ARN)."""
    env = app_environment(sidecar, tmp)
    env["AWS_CONTAINER_CREDENTIALS_FULL_URI"] = f"http://127.0.0.1:{sidecar.port}{path}"
    env.pop("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", None)
    env["AWS_CONTAINER_AUTHORIZATION_TOKEN"] = token
    script = "import boto3; print(boto3.client('sts').get_caller_identity()['Arn'])"
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.mark.parametrize("token_mode", ["file", "env"])
def test_a_sidecar_serves_each_container_its_own_role(
    moto_sts, sidecar_factory, tmp_path: Path, token_mode
):
    for name in ("reader", "backup", "audit"):
        create_role(moto_sts.url, name)
    sidecar = sidecar_factory(container_roles_env(tmp_path, moto_sts.url, token_mode, True))
    sidecar.wait_ready()
    tokens = {c: container_token(sidecar, c) for c in ("backup", "audit")}
    tokens["pod"] = sidecar.token()
    assert len(set(tokens.values())) == 3
    if token_mode == "file":
        for container in ("backup", "audit"):
            path = Path(
                json.loads(sidecar.env["SIDECRED_CONTAINER_ROLES"])[container]["token_file"]
            )
            assert stat.S_IMODE(path.stat().st_mode) == 0o644

    backup = "/v1/containers/backup/credentials"
    assert "assumed-role/backup/shop.web-7d4b9c-x2x9q.backup" in caller_arn(
        sidecar, tmp_path, backup, tokens["backup"]
    )
    assert "assumed-role/audit/" in caller_arn(
        sidecar, tmp_path, "/v1/containers/audit/credentials", tokens["audit"]
    )
    assert "assumed-role/reader/" in caller_arn(sidecar, tmp_path, "/v1/credentials", tokens["pod"])

    base = f"http://127.0.0.1:{sidecar.port}"
    for path, token in (
        (backup, tokens["audit"]),
        (backup, tokens["pod"]),
        ("/v1/credentials", tokens["backup"]),
    ):
        status, body = http_get(base + path, {"Authorization": token})
        assert status == 403 and b"ASIA" not in body
    assert (
        http_get(base + "/v1/containers/web/credentials", {"Authorization": tokens["pod"]})[0]
        == 404
    )

    status, text = sidecar.readyz()
    assert status == 200 and f"backup={BACKUP_ARN},audit={AUDIT_ARN}" in text
    started = next(r for r in sidecar.log_records() if r["event"] == "started")
    assert started["containers"] == {"backup": BACKUP_ARN, "audit": AUDIT_ARN}
    refreshed = {
        r.get("container") for r in sidecar.log_records() if r["event"] == "credentials_refreshed"
    }
    assert refreshed == {None, "backup", "audit"}
    assert all(token not in sidecar.log() for token in tokens.values())


def test_container_roles_alone_and_one_refused_role_keeps_the_pod_not_ready(
    scripted_sts_factory, sidecar_factory, tmp_path: Path
):
    def sts(params: dict[str, str]) -> tuple[int, str]:
        return (
            access_denied(params) if params["RoleArn"] == AUDIT_ARN else (200, success_xml(params))
        )

    scripted = scripted_sts_factory(sts)
    sidecar = sidecar_factory(container_roles_env(tmp_path, scripted.url, "file", pod_role=False))
    base = f"http://127.0.0.1:{sidecar.port}"

    def backup_status() -> int:
        path = "/v1/containers/backup/credentials"
        return http_get(base + path, {"Authorization": container_token(sidecar, "backup")})[0]

    started = '"event":"started"'
    wait_until(lambda: started in sidecar.log(), WAIT_SECONDS, "the start (tokens written)")
    wait_until(lambda: backup_status() == 200, WAIT_SECONDS, "backup's credentials")
    wait_until(lambda: "sts_failed" in sidecar.log(), WAIT_SECONDS, "audit's refusal")
    status, body = http_get(
        base + "/v1/credentials", {"Authorization": container_token(sidecar, "backup")}
    )
    assert status == 404 and json.loads(body)["Code"] == "NoPodRole"
    status, text = sidecar.readyz()
    assert status == 503
    assert f"not ready: AccessDenied: container audit role {AUDIT_ARN}: AccessDenied:" in text
    status, body = http_get(
        base + "/v1/containers/audit/credentials",
        {"Authorization": container_token(sidecar, "audit")},
    )
    assert status == 503 and json.loads(body)["Code"] == "AccessDenied"


def test_fetch_takes_the_container_whose_role_to_fetch(scripted_sts_factory, tmp_path: Path):
    sts = scripted_sts_factory(lambda p: (200, success_xml(p)))
    env = container_roles_env(tmp_path, sts.url, "file", pod_role=False)
    result = run_cli("fetch", "--container", "backup", env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert sts.calls[-1]["RoleArn"] == BACKUP_ARN
    assert sts.calls[-1]["RoleSessionName"] == "shop.web-7d4b9c-x2x9q.backup"

    result = run_cli("fetch", env=env, timeout=60)
    assert result.returncode == 2 and "no pod-level role" in result.stderr
    result = run_cli("fetch", "--container", "web", env=env, timeout=60)
    assert result.returncode == 2 and "container 'web' has no role of its own" in result.stderr
    assert len(sts.calls) == 1
