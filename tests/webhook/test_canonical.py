"""pods.canonical: the one definition of the sidecar that admission and the broker share."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from sidecred.pods.canonical import (
    calls_sidecar,
    canonical_sidecar,
    check_sidecar,
    image_repository,
)
from sidecred.pods.settings import Settings
from sidecred.webhook.decide import decide_mutation
from sidecred.webhook.mutate import apply_patch
from sidecred.webhook.review import pod_request

CONFIG = Settings(base_role_arn="arn:aws:iam::111122223333:role/", namespace_policy="off")


def injected_pod(config: Settings = CONFIG) -> dict[str, Any]:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "web-0",
            "namespace": "shop",
            "annotations": {"iam.amazonaws.com/role": "shop-reader"},
        },
        "spec": {"containers": [{"name": "app", "image": "app:1"}]},
    }
    decision = decide_mutation(pod_request(pod), None, config, new_token=lambda: "t" * 43)
    assert decision.allowed and decision.patch
    return apply_patch(pod, decision.patch)


@pytest.mark.parametrize(
    ("image", "repository"),
    [
        ("ghcr.io/sidecred/sidecred-sidecar:0.1.0", "ghcr.io/sidecred/sidecred-sidecar"),
        ("ghcr.io/sidecred/sidecred-sidecar@sha256:ab", "ghcr.io/sidecred/sidecred-sidecar"),
        ("GHCR.io/Sidecred/sidecred-sidecar:1", "ghcr.io/sidecred/sidecred-sidecar"),
        ("localhost:5000/sidecred:dev", "localhost:5000/sidecred"),
        ("busybox", "docker.io/library/busybox"),
        ("sidecred/sidecred:1", "docker.io/sidecred/sidecred"),
    ],
)
def test_image_repository(image: str, repository: str) -> None:
    assert image_repository(image) == repository


@pytest.mark.parametrize(
    ("command", "args", "runs"),
    [
        (["sidecred", "sidecar"], None, True),
        (["/usr/local/bin/sidecred"], ["sidecar", "--wait-ready"], True),
        (["sh", "-c"], ["exec sidecred   sidecar"], True),
        (["python3", "-m", "sidecred"], ["sidecar"], True),
        (["python3", "-c", "from sidecred.sidecar.main import run; run()"], None, True),
        (None, ["sidecar"], True),
        (["sidecred", "check", "-f", "pod.yaml"], None, False),
        (["envoy", "--sidecar"], None, False),
        (["python", "app.py"], ["sidecar"], False),
        (None, None, False),
    ],
)
def test_calls_sidecar(command: list[str] | None, args: list[str] | None, runs: bool) -> None:
    container = {"name": "c", "image": "x", "command": command, "args": args}
    assert calls_sidecar(container) is runs


def test_the_injected_sidecar_is_canonical_and_the_api_servers_defaults_are_tolerated() -> None:
    pod = injected_pod()
    assert check_sidecar(pod, CONFIG) == check_sidecar(pod, CONFIG, "shop")
    verdict = check_sidecar(pod, CONFIG)
    assert verdict.canonical and verdict.problem is None
    assert verdict.location == ("initContainers", 0)
    sidecar = pod["spec"]["initContainers"][0]
    assert sidecar == canonical_sidecar(pod, CONFIG)
    # What the API server and AlwaysPullImages add or normalise.
    sidecar["terminationMessagePath"] = "/dev/termination-log"
    sidecar["imagePullPolicy"] = "Always"
    sidecar["resources"] = {"requests": {"cpu": "0.01"}}
    sidecar["startupProbe"]["successThreshold"] = 1
    sidecar["startupProbe"]["httpGet"]["scheme"] = "HTTP"
    for volume in pod["spec"]["volumes"]:
        if "projected" in volume:
            volume["projected"]["defaultMode"] = 420
    assert check_sidecar(pod, CONFIG).canonical


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (lambda s: s.update(workingDir="/tmp"), "workingDir is set"),
        (lambda s: s.update(image="evil.example/x:1"), 'image is "evil.example/x:1"'),
        (lambda s: s["securityContext"].update(runAsUser=0), "securityContext.runAsUser is 0"),
        (lambda s: s.update(args=["--debug"]), "args is set"),
        (lambda s: s["env"].append({"name": "X", "value": "1"}), "has an extra entry"),
        (lambda s: s.pop("startupProbe"), "startupProbe is missing"),
    ],
)
def test_any_other_change_to_the_sidecar_is_a_forged_sidecar(change: Any, fragment: str) -> None:
    pod = injected_pod()
    change(pod["spec"]["initContainers"][0])
    verdict = check_sidecar(pod, CONFIG)
    assert not verdict.canonical
    assert verdict.problem is not None and verdict.problem.reason == "forged-sidecar"
    assert fragment in verdict.problem.message


def test_the_canonical_sidecar_depends_on_the_configuration() -> None:
    pod = injected_pod()
    broker = Settings(
        base_role_arn=CONFIG.base_role_arn,
        namespace_policy="off",
        credential_source="broker",
        broker_url="https://broker",
        broker_ca="PEM",
    )
    verdict = check_sidecar(pod, broker)
    assert not verdict.canonical and verdict.problem is not None
    assert check_sidecar(injected_pod(broker), broker).canonical


def test_an_unannotated_pod_has_no_canonical_sidecar() -> None:
    pod = copy.deepcopy(injected_pod())
    del pod["metadata"]["annotations"]["iam.amazonaws.com/role"]
    assert canonical_sidecar(pod, CONFIG) is None
    verdict = check_sidecar(pod, CONFIG)
    assert not verdict.canonical
    assert verdict.problem is not None and 'container "sidecred"' in verdict.problem.message
