"""The broker and sidecred.dev/container-roles: `?container=<c>` gets only the role the pod's
admitted annotations give `<c>`, under the live policy, with session `<ns>.<pod>.<c>`.

The pure authorisation first, then the real broker over TLS with moto as STS.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import httpx

from sidecred.broker.authorise import Caller, Grant, Refusal, authorise
from sidecred.broker.sidecar_check import broker_sidecar_problem
from sidecred.dev.processes import wait_until
from sidecred.kube.watch import CACHE, Lookup

from .conftest import Cluster
from .pods import BASE, CONFIG, POLICY, READER, broker_pod, namespace
from .test_issuance import assert_error, caller_arn

UID = "0d9a8c1e-0000-4000-8000-0000000000c1"
CALLER = Caller("shop", "web", "web-1", UID)
BACKUP = BASE + "shop-backup"
MAP = '{"backup": "shop-backup", "metrics": ""}'
CONTAINERS = ("app", "backup", "metrics")
KEY = "sidecred.dev/container-roles"


def roles_pod(role: str | None = READER, value: str = MAP, **extra: str) -> dict[str, Any]:
    return broker_pod(
        "web-1", role=role, uid=UID, containers=CONTAINERS, annotations={KEY: value, **extra}
    )


def decide(pod: dict[str, Any], container: str = "", ns: dict[str, Any] | None = None):
    ns_lookup = Lookup(ns if ns is not None else namespace(), CACHE)
    return authorise(
        CALLER, Lookup(pod, CACHE), ns_lookup, CONFIG, broker_sidecar_problem, container
    )


def test_a_container_gets_its_own_role_with_its_own_session_name() -> None:
    grant = decide(roles_pod(), "backup")
    assert isinstance(grant, Grant), grant
    assert (grant.role_arn, grant.session_name, grant.container) == (
        BACKUP,
        "shop.web-1.backup",
        "backup",
    )
    pod_grant = decide(roles_pod())
    assert isinstance(pod_grant, Grant)
    assert (pod_grant.role_arn, pod_grant.session_name, pod_grant.container) == (
        READER,
        "shop.web-1",
        "",
    )
    # Distinct grants: the issuer's cache never hands one role's credentials to another.
    assert pod_grant != grant


def test_a_custom_session_name_carries_the_container() -> None:
    grant = decide(roles_pod(**{"iam.amazonaws.com/session-name": "checkout"}), "backup")
    assert isinstance(grant, Grant) and grant.session_name == "shop.checkout.backup"


def _refusal(result: Grant | Refusal, code: str, *words: str) -> str:
    assert isinstance(result, Refusal), result
    assert (result.status, result.reason) == (403, code), result
    for word in words:
        assert word in result.message, result.message
    return result.message


def test_only_a_container_the_map_gives_a_role_gets_one() -> None:
    _refusal(decide(roles_pod(), "metrics"), "NoContainerRole", 'gives it no credentials ("")')
    _refusal(decide(roles_pod(), "app"), "NoContainerRole", "uses the pod's role")
    _refusal(decide(roles_pod(), "cron"), "NoContainerRole", "no container of that name")
    _refusal(decide(roles_pod(), "sidecred"), "NoContainerRole", 'container "sidecred"')


def test_a_map_only_pod_has_no_pod_role_and_says_how_to_ask() -> None:
    only = roles_pod(role=None, value='{"backup": "shop-backup"}')
    _refusal(decide(only), "PodNotAnnotated", "?container=<name>")
    grant = decide(only, "backup")
    assert isinstance(grant, Grant) and grant.role_arn == BACKUP


def test_revoking_one_role_refuses_that_role_and_leaves_the_other() -> None:
    narrowed = namespace(annotations={"iam.amazonaws.com/permitted": READER})
    message = _refusal(
        decide(roles_pod(), "backup", narrowed),
        "RoleNotPermitted",
        f'container "backup" ({KEY}): role "{BACKUP}" is not permitted in namespace "shop"',
    )
    assert message.startswith("sidecred: container")
    assert isinstance(decide(roles_pod(), "", narrowed), Grant)
    narrowed = namespace(annotations={"iam.amazonaws.com/permitted": BACKUP})
    assert isinstance(decide(roles_pod(), "backup", narrowed), Grant)
    _refusal(decide(roles_pod(), "", narrowed), "RoleNotPermitted", f'role "{READER}"')


def test_a_map_changed_after_admission_is_not_the_canonical_sidecar() -> None:
    """The webhook refuses the UPDATE; should the pod read differently anyway, the broker
    compares the sidecar with the map it reads and issues nothing."""
    changed = roles_pod()
    changed["metadata"]["annotations"][KEY] = '{"backup": "shop-admin", "metrics": ""}'
    _refusal(decide(changed, "backup"), "NoCanonicalSidecar", 'container "backup"\'s role')
    _refusal(decide(changed), "NoCanonicalSidecar")


def test_the_sidecar_env_names_the_container_roles_it_asks_for() -> None:
    sidecar = roles_pod()["spec"]["initContainers"][0]
    env = {e["name"]: e.get("value") for e in sidecar["env"]}
    roles = json.loads(env["SIDECRED_CONTAINER_ROLES"])
    assert roles == {
        "backup": {
            "role_arn": BACKUP,
            "session_name": "shop.web-1.backup",
            "token_file": "/var/run/sidecred/backup/token",
        }
    }


# --- the real broker over TLS -----------------------------------------------------------


def _add_roles_pod(cluster: Cluster, **kwargs: Any) -> tuple[dict[str, Any], str]:
    kwargs.setdefault("containers", CONTAINERS)
    kwargs.setdefault("annotations", {KEY: MAP})
    return cluster.add_pod("roles", **kwargs)


def test_each_container_reaches_its_own_role_through_the_broker(cluster: Cluster) -> None:
    pod, token = _add_roles_pod(cluster)
    name = pod["metadata"]["name"]
    before = cluster.broker.metric("sidecred_broker_issuances_total", result="issued", role="container")  # fmt: skip
    app = cluster.broker.issue(token)
    backup = cluster.broker.issue(token, container="backup")
    assert app.status_code == 200 and backup.status_code == 200, (app.text, backup.text)
    assert caller_arn(cluster.sts.url, app.json()).endswith(f"/shop-reader/shop.{name}")
    assert caller_arn(cluster.sts.url, backup.json()).endswith(f"/shop-backup/shop.{name}.backup")
    assert app.json()["AccessKeyId"] != backup.json()["AccessKeyId"]
    after = cluster.broker.metric("sidecred_broker_issuances_total", result="issued", role="container")  # fmt: skip
    assert after == before + 1
    records = [json.loads(line) for line in cluster.broker.log().splitlines() if line.startswith("{")]  # fmt: skip
    assert any(r.get("pod") == name and r.get("container") == "backup" for r in records)

    assert_error(
        cluster.broker.issue(token, container="metrics"), 403, "NoContainerRole", "metrics"
    )
    assert_error(cluster.broker.issue(token, container="app"), 403, "NoContainerRole", "pod's role")


def test_a_bad_container_parameter_is_a_400(cluster: Cluster) -> None:
    _, token = _add_roles_pod(cluster)
    for value in ("Backup", "", "a/b", "x" * 64, "../credentials"):
        assert_error(cluster.broker.issue(token, container=value), 400, "InvalidContainer")
    with cluster.broker.client() as http:
        twice = http.post(
            "/v1/credentials?container=backup&container=app",
            headers={"Authorization": f"Bearer {token}"},
            extensions={"sni_hostname": "localhost"},
        )
    assert_error(twice, 400, "InvalidContainer", "one container at most")
    # Asked without a token, the 400 comes first and names no pod.
    assert cluster.broker.issue(None, container="Backup").status_code == 400


def test_revocation_works_per_role(cluster: Cluster) -> None:
    _, token = _add_roles_pod(cluster)
    assert cluster.broker.issue(token, container="backup").status_code == 200
    cluster.stub.set_annotations("shop", {"iam.amazonaws.com/permitted": READER})
    try:
        answers: list[httpx.Response] = []

        def backup_refused() -> bool:
            answers.append(cluster.broker.issue(token, container="backup"))
            return answers[-1].status_code == 403

        wait_until(backup_refused, timeout=20, what="the policy change reaching the broker")
        assert_error(answers[-1], 403, "RoleNotPermitted", f'container "backup" ({KEY})', BACKUP)
        assert cluster.broker.issue(token).status_code == 200  # the pod's role is untouched
    finally:
        cluster.stub.set_annotations("shop", POLICY)
    wait_until(
        lambda: cluster.broker.issue(token, container="backup").status_code == 200,
        timeout=20,
        what="the restored policy reaching the broker",
    )


def test_a_map_only_pod_through_the_broker(cluster: Cluster) -> None:
    pod, token = _add_roles_pod(cluster, role=None, annotations={KEY: '{"backup": "shop-backup"}'})
    assert_error(cluster.broker.issue(token), 403, "PodNotAnnotated", "?container=<name>")
    backup = cluster.broker.issue(token, container="backup")
    assert backup.status_code == 200, backup.text
    name = pod["metadata"]["name"]
    assert caller_arn(cluster.sts.url, backup.json()).endswith(f"/shop.{name}.backup")


def test_grants_for_two_roles_of_one_pod_are_cached_apart() -> None:
    """Same pod and token, two roles: two grants, so two STS generations."""
    app, backup = decide(roles_pod()), decide(roles_pod(), "backup")
    assert isinstance(app, Grant) and isinstance(backup, Grant)
    assert dataclasses.replace(backup, container="") != app
