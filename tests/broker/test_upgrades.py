"""After `helm upgrade`, the broker keeps serving pods injected before it.

A broker on the new release's settings (a new sidecar tag from a mirror, region,
session length, token lifetime, resources, ports, token mode, proxy env and a new
broker CA) answers, over TLS, pods admitted under the release before: for each
of those chart values alone and for all of them at once. Forgeries are still
refused by the same broker.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from sidecred.certs.generate import build_ca, certificate_pem
from sidecred.pods.settings import Settings

from .broker_process import BrokerProcess, start_broker
from .conftest import Cluster
from .pods import READER, broker_pod
from .test_issuance import assert_error

OLD_REPOSITORY = "ghcr.io/sidecred/sidecred-sidecar"
MIRROR = "registry.corp.example/platform/sidecred-sidecar"
OLD_PROXY = (("HTTPS_PROXY", "http://proxy-old.corp.example:3128"),)
NEW_PROXY = (("HTTPS_PROXY", "http://proxy.corp.example:3128"), ("NO_PROXY", ".svc"))

# What the new release sets; the flags and the Settings the broker has with them.
NEW_VALUES: dict[str, Any] = {
    "sidecar_image": f"{MIRROR}:0.2.0",
    "sidecar_repositories": (OLD_REPOSITORY,),
    "region": "us-west-2",
    "session_duration": 7200,
    "token_expiration": 7200,
    "sidecar_cpu_limit": "1",
    "sidecar_memory_limit": "128Mi",
    "sidecar_port": 62080,
    "health_port": 62081,
    "token_mode": "env",
    "sidecar_extra_env": NEW_PROXY,
    "sidecar_accepted_env": OLD_PROXY,
}


def flags_of(values: dict[str, Any]) -> list[str]:
    flags: list[str] = []
    for name, value in values.items():
        if name.endswith("_env"):
            text = json.dumps([{"name": n, "value": v} for n, v in value])
        elif isinstance(value, tuple):
            text = ",".join(value)
        else:
            text = str(value)
        flags += ["--" + name.replace("_", "-"), text]
    return flags


def old_ca() -> str:
    return certificate_pem(build_ca("old-ca", dt.datetime.now(dt.UTC), 1).certificate).decode()


# chart value -> how the release before differs in it (the rest as the new release).
BEFORE: dict[str, Callable[[Settings], Settings]] = {
    "sidecar.image.tag and repository": lambda c: dataclasses.replace(
        c, sidecar_image=f"{OLD_REPOSITORY}:0.1.0"
    ),
    "region": lambda c: dataclasses.replace(c, region=None),
    "sessionDuration": lambda c: dataclasses.replace(c, session_duration=3600),
    "sidecar.tokenExpiration": lambda c: dataclasses.replace(c, token_expiration=86400),
    "sidecar.resources": lambda c: dataclasses.replace(
        c, sidecar_cpu_limit="500m", sidecar_memory_limit="96Mi"
    ),
    "sidecar.port and healthPort": lambda c: dataclasses.replace(
        c, sidecar_port=61080, health_port=61081
    ),
    "sidecar.tokenMode": lambda c: dataclasses.replace(c, token_mode="file"),
    "sidecar.mode": lambda c: dataclasses.replace(c, sidecar_mode="container"),
    "sidecar.extraEnv": lambda c: dataclasses.replace(c, sidecar_extra_env=OLD_PROXY),
    "a new broker CA": lambda c: dataclasses.replace(c, broker_ca=old_ca()),
}


@pytest.fixture(scope="module")
def upgraded(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    """A broker started with the new release's values."""
    tmp = tmp_path_factory.mktemp("upgraded")
    broker = start_broker(tmp, cluster.stub.url, cluster.sts.url, *flags_of(NEW_VALUES))
    broker.config = dataclasses.replace(broker.config, **NEW_VALUES)
    yield broker
    broker.stop()


def issue_for(cluster: Cluster, broker: BrokerProcess, config: Settings, prefix: str) -> Any:
    pod, token = cluster.add_pod(prefix, config=config)
    return pod, broker.issue(token)


@pytest.mark.parametrize("value", BEFORE)
def test_pods_injected_before_an_upgrade_keep_getting_their_role(
    value: str, cluster: Cluster, upgraded: BrokerProcess
) -> None:
    before = BEFORE[value](upgraded.config)
    _, response = issue_for(cluster, upgraded, before, "before")
    assert response.status_code == 200, response.text
    assert response.json()["RoleArn"] == READER


def test_a_pod_from_the_release_before_in_every_value_at_once(
    cluster: Cluster, upgraded: BrokerProcess
) -> None:
    before = upgraded.config
    for change in BEFORE.values():
        before = change(before)
    _, response = issue_for(cluster, upgraded, before, "oldest")
    assert response.status_code == 200, response.text
    assert response.json()["RoleArn"] == READER


def forged(name: str, value: str) -> Callable[[dict[str, Any]], None]:
    def edit(pod: dict[str, Any]) -> None:
        sidecar = next(c for c in pod["spec"]["initContainers"] if c["name"] == "sidecred")
        sidecar["env"] = [e for e in sidecar["env"] if e["name"] != name]
        sidecar["env"].append({"name": name, "value": value})

    return edit


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("SIDECRED_BROKER_URL", "https://broker.evil.example", "env SIDECRED_BROKER_URL is"),
        ("HTTPS_PROXY", "http://evil.example:3128", "env HTTPS_PROXY has a value"),
        ("AWS_CA_BUNDLE", "/var/run/sidecred/ca.pem", "env AWS_CA_BUNDLE is set"),
        ("SIDECRED_ROLE_ARN", "arn:aws:iam::123456789012:role/admin", "env SIDECRED_ROLE_ARN"),
    ],
)
def test_the_upgraded_broker_still_refuses_forged_sidecars(
    name: str, value: str, fragment: str, cluster: Cluster, upgraded: BrokerProcess
) -> None:
    pod = broker_pod("forged-" + name.lower().replace("_", "-"), config=upgraded.config)
    forged(name, value)(pod)
    token = cluster.authority.pod_token(cluster.stub.put("pods", pod))
    assert_error(upgraded.issue(token), 403, "NoCanonicalSidecar", fragment)


def test_a_proxy_no_release_configured_is_refused(
    cluster: Cluster, upgraded: BrokerProcess
) -> None:
    tenant = dataclasses.replace(
        upgraded.config, sidecar_extra_env=(("HTTPS_PROXY", "http://tenant.example:3128"),)
    )
    _, response = issue_for(cluster, upgraded, tenant, "tenant-proxy")
    assert_error(response, 403, "NoCanonicalSidecar", "env HTTPS_PROXY has a value")
