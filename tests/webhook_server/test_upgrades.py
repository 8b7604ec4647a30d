"""Upgrades and neighbours, through real webhook processes over TLS.

- Two replicas on different configurations (a rolling upgrade): a pod mutated by
  one is validated, and mutated again (reinvocation), by the other, for each chart
  value an upgrade may change.
- Other mutating webhooks (Kyverno-style policies) change the pod between our
  mutation and our validation: env on every container, a registry rewrite,
  terminationMessagePolicy.
- A rolling upgrade behind a Service: the old replica drains while the new one,
  on the new configuration, takes over; no admission is refused or dropped.
"""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sidecred.dev.kube_stub import KubeApiStub
from sidecred.webhook.mutate import apply_patch
from sidecred.webhook.review import admission_review, pod_request
from tests.support.admitting_clients import terminate_while_calling
from tests.support.service_proxy import Backend, ServiceProxy, https_readiness

from . import webhook_process as wp

OLD_REPOSITORY = "ghcr.io/sidecred/sidecred-sidecar"
MIRROR = "registry.corp.example/platform/sidecred-sidecar"
PROXY_ENV = json.dumps([{"name": "HTTPS_PROXY", "value": "http://proxy.corp.example:3128"}])

# chart value -> the webhook flags it becomes (the release before: the defaults).
UPGRADES: dict[str, list[str]] = {
    "sidecar.image.tag": ["--sidecar-image", f"{OLD_REPOSITORY}:0.2.0"],
    "sidecar.image.digest": ["--sidecar-image", f"{OLD_REPOSITORY}@sha256:{'c' * 64}"],
    "sidecar.image.repository (a mirror)": [
        *("--sidecar-image", f"{MIRROR}:0.1.0"),
        *("--sidecar-repositories", OLD_REPOSITORY),
    ],
    "region": ["--region", "eu-west-1"],
    "sessionDuration": ["--session-duration", "7200"],
    "sidecar.resources": [
        *("--sidecar-cpu-request", "20m", "--sidecar-memory-request", "48Mi"),
        *("--sidecar-cpu-limit", "1", "--sidecar-memory-limit", "128Mi"),
    ],
    "sidecar.tokenExpiration": ["--token-expiration", "7200"],
    "sidecar.drainSeconds": ["--drain-seconds", "45"],
    "sidecar.port and healthPort": ["--sidecar-port", "62080", "--health-port", "62081"],
    "sidecar.mode": ["--sidecar-mode", "container"],
    "sidecar.tokenMode": ["--token-mode", "env"],
    "sidecar.imagePullSecrets": ["--sidecar-image-pull-secrets", "registry-corp"],
    "sidecar.extraEnv": ["--sidecar-extra-env", PROXY_ENV],
}
# The release before does not know the mirror or the proxy the new one adds; a rollback
# lists them (sidecar.repositories, sidecar.acceptedExtraEnv) while such pods run.
ONE_WAY = {"sidecar.image.repository (a mirror)", "sidecar.extraEnv"}


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One serving certificate for every replica (one Secret in a cluster)."""
    tls = tmp_path_factory.mktemp("certs") / "tls"
    wp.issue_certificates(tls)
    return tls


def replica(tmp: Path, certificates: Path, stub: KubeApiStub, *flags: str) -> wp.WebhookProcess:
    shutil.copytree(certificates, tmp / "tls")
    return wp.start_webhook(tmp, stub.url, *flags)


@pytest.fixture(scope="module")
def before(
    module_stub: KubeApiStub, certificates: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[wp.WebhookProcess]:
    """The replica still on the release before: the defaults."""
    process = replica(tmp_path_factory.mktemp("before"), certificates, module_stub)
    yield process
    process.stop()


def mutate(webhook: wp.WebhookProcess, obj: dict[str, Any]) -> dict[str, Any]:
    """The pod as the API server stores it after `webhook`'s mutation (which must allow it)."""
    with webhook.client() as http:
        answer = wp.post_review(http, "/mutate", wp.review(obj))
    assert answer["allowed"], answer.get("status")
    return apply_patch(obj, wp.decode_patch(answer)) if answer.get("patch") else obj


def validate(
    webhook: wp.WebhookProcess, obj: dict[str, Any], old: dict[str, Any] | None = None
) -> dict[str, Any]:
    """/validate of a CREATE, or of an UPDATE from `old`."""
    if old is None:
        body = wp.review(obj)
    else:
        body = dict(admission_review(pod_request(obj, operation="UPDATE", old_pod=old)))
    with webhook.client() as http:
        return wp.post_review(http, "/validate", body)


def named(obj: dict[str, Any]) -> dict[str, Any]:
    """The pod with the name the API server gives a generateName pod."""
    obj = copy.deepcopy(obj)
    obj["metadata"]["name"] = obj["metadata"]["generateName"] + "x7k2p"
    return obj


def sidecars(obj: dict[str, Any]) -> list[dict[str, Any]]:
    spec = obj["spec"]
    return [
        c for c in spec.get("initContainers", []) + spec["containers"] if c["name"] == "sidecred"
    ]


def check_across(first: wp.WebhookProcess, second: wp.WebhookProcess) -> None:
    """Mutated by `first`: validated by `second`, on CREATE and on a later UPDATE, and a
    reinvocation by `second` (after another webhook added a container) adds no sidecar."""
    injected = mutate(first, wp.pod("shop-reader"))
    answer = validate(second, injected)
    assert answer["allowed"], answer.get("status")
    late = copy.deepcopy(injected)
    late["spec"]["containers"].append({"name": "late", "image": "late:1"})
    reinvoked = mutate(second, late)
    assert len(sidecars(reinvoked)) == 1
    assert sidecars(reinvoked)[0] == sidecars(injected)[0]
    late_env = {e["name"]: e.get("value") for e in reinvoked["spec"]["containers"][-1]["env"]}
    sidecar_port = next(
        e["value"] for e in sidecars(injected)[0]["env"] if e["name"] == "SIDECRED_PORT"
    )
    assert (
        late_env["AWS_CONTAINER_CREDENTIALS_FULL_URI"]
        == f"http://127.0.0.1:{sidecar_port}/v1/credentials"
    )
    assert validate(second, reinvoked)["allowed"]
    stored = named(reinvoked)
    relabelled = copy.deepcopy(stored)
    relabelled["metadata"]["labels"]["rollout"] = "2"
    update = validate(second, relabelled, old=stored)
    assert update["allowed"], update.get("status")


@pytest.mark.parametrize("value", UPGRADES)
def test_replicas_on_two_releases_accept_each_others_pods(
    value: str,
    before: wp.WebhookProcess,
    module_stub: KubeApiStub,
    certificates: Path,
    tmp_path: Path,
) -> None:
    after = replica(tmp_path, certificates, module_stub, *UPGRADES[value])
    try:
        check_across(before, after)
        if value not in ONE_WAY:
            check_across(after, before)
    finally:
        after.stop()


def env_on_every_container(name: str, value: str) -> Callable[[dict[str, Any]], None]:
    def policy(obj: dict[str, Any]) -> None:
        for container in obj["spec"].get("initContainers", []) + obj["spec"]["containers"]:
            container.setdefault("env", []).append({"name": name, "value": value})

    return policy


def rewrite_registry(old: str, new: str) -> Callable[[dict[str, Any]], None]:
    def policy(obj: dict[str, Any]) -> None:
        for container in obj["spec"].get("initContainers", []) + obj["spec"]["containers"]:
            if container["image"].startswith(old):
                container["image"] = new + container["image"][len(old) :]

    return policy


def termination_message_policy(obj: dict[str, Any]) -> None:
    for container in obj["spec"].get("initContainers", []) + obj["spec"]["containers"]:
        container["terminationMessagePolicy"] = "FallbackToLogsOnError"
        container["terminationMessagePath"] = "/dev/termination-log"


def always_pull(obj: dict[str, Any]) -> None:
    for container in obj["spec"].get("initContainers", []) + obj["spec"]["containers"]:
        container["imagePullPolicy"] = "Always"


NEIGHBOURS: dict[str, Callable[[dict[str, Any]], None]] = {
    "TZ on every container": env_on_every_container("TZ", "Europe/Berlin"),
    "terminationMessagePolicy on every container": termination_message_policy,
    "AlwaysPullImages": always_pull,
}


@pytest.mark.parametrize("policy", NEIGHBOURS.values(), ids=NEIGHBOURS)
def test_other_mutating_webhooks_between_mutation_and_validation(
    policy: Callable[[dict[str, Any]], None], before: wp.WebhookProcess
) -> None:
    injected = mutate(before, wp.pod("shop-reader"))
    policy(injected)
    reinvoked = mutate(before, injected)  # reinvocationPolicy: IfNeeded
    assert len(sidecars(reinvoked)) == 1
    answer = validate(before, reinvoked)
    assert answer["allowed"], answer.get("status")


def test_a_registry_rewrite_is_accepted_for_the_listed_mirrors_only(
    before: wp.WebhookProcess, module_stub: KubeApiStub, certificates: Path, tmp_path: Path
) -> None:
    injected = mutate(before, wp.pod("shop-reader"))
    rewrite_registry("ghcr.io/sidecred/", "registry.corp.example/platform/")(injected)
    refused = validate(before, injected)
    assert not refused["allowed"]
    assert refused["status"]["code"] == 403
    message = refused["status"]["message"]
    assert f'image "{MIRROR}:0.1.0" is not from a sidecar repository' in message
    assert "--sidecar-repositories" in message
    mirrored = replica(tmp_path, certificates, module_stub, "--sidecar-repositories", MIRROR)
    try:
        answer = validate(mirrored, injected)
        assert answer["allowed"], answer.get("status")
    finally:
        mirrored.stop()


def test_env_that_could_redirect_the_token_is_refused_even_from_a_policy(
    before: wp.WebhookProcess,
) -> None:
    """A policy adding AWS_* or proxy env to every container hits the sidecar too: refused,
    saying that only sidecred's configuration may give the sidecar such env."""
    for name, value in (("AWS_REGION", "eu-west-1"), ("HTTPS_PROXY", "http://proxy:3128")):
        injected = mutate(before, wp.pod("shop-reader"))
        env_on_every_container(name, value)(injected)
        refused = validate(before, injected)
        assert not refused["allowed"]
        assert (
            f"env {name} is set, and only configuration may give the sidecar"
            in (refused["status"]["message"])
        )


def admit_and_validate(http: httpx.Client) -> str | None:
    """One pod through the Service: mutated by one replica, validated by whichever answers."""
    mutated = http.post(
        "/mutate",
        json=wp.review(wp.pod("shop-reader")),
        extensions=wp.SNI,
        headers={"Connection": "close"},
    )
    if mutated.status_code != 200 or not mutated.json()["response"]["allowed"]:
        return f"mutate: {mutated.status_code} {mutated.text[:300]}"
    injected = apply_patch(wp.pod("shop-reader"), wp.decode_patch(mutated.json()["response"]))
    checked = http.post(
        "/validate", json=wp.review(injected), extensions=wp.SNI, headers={"Connection": "close"}
    )
    if checked.status_code != 200 or not checked.json()["response"]["allowed"]:
        return f"validate: {checked.status_code} {checked.text[:300]}"
    return None


def test_a_rolling_upgrade_refuses_and_drops_no_admission(
    module_stub: KubeApiStub, certificates: Path, tmp_path: Path
) -> None:
    """The issue's reproduction: a new image tag and a region, old and new replicas behind
    one Service, the old one terminated while pods are admitted."""
    old = replica(tmp_path / "old", certificates, module_stub, "--shutdown-delay", "5")
    new = replica(
        tmp_path / "new",
        certificates,
        module_stub,
        *("--shutdown-delay", "5", "--sidecar-image", f"{OLD_REPOSITORY}:0.2.0"),
        *("--region", "eu-west-1"),
    )
    readiness = https_readiness(str(certificates / "ca.crt"), wp.SERVER_NAME)
    proxy = ServiceProxy([Backend(old.port), Backend(new.port)], readiness)
    try:
        ca = str(certificates / "ca.crt")
        tally, _ = terminate_while_calling(proxy, ca, admit_and_validate, old.process, after=20)
    finally:
        proxy.close()
        old.stop()
        new.stop()
    assert tally.drops == []
    assert all(b.connections > 0 for b in proxy.backends)
