"""The chart's values for upgrades and rollouts: mirrors, the sidecar's operator env, draining.

Each value is followed to where it acts: the webhook's and the broker's settings
(parsed by the real option parser), the validating webhook's matchConditions
(evaluated with cel-python), and the Deployments' drain on the way out.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import helm_python
import pytest

from deploy import render
from sidecred.pods.settings import add_config_arguments, config_from_args
from sidecred.serving.cli import shutdown_delay
from sidecred.webhook.serve_cli import build_parser
from tests.deploy import admission_catalogue as cat
from tests.deploy.chart_support import find, validate_strict
from tests.deploy.webhook_selection import CALLED, SKIPPED, configuration_outcome

MIRROR = "Registry.Corp.Example/platform/credproxy"
PROXY = [{"name": "HTTPS_PROXY", "value": "http://proxy.corp.example:3128"}]
OLD_PROXY = [{"name": "HTTPS_PROXY", "value": "http://old-proxy.corp.example:3128"}]
VALUES: dict[str, Any] = {
    "sidecar": {"repositories": [MIRROR], "extraEnv": PROXY, "acceptedExtraEnv": OLD_PROXY},
    "drain": {"preStopSeconds": 10, "delaySeconds": 8, "terminationGracePeriodSeconds": 40},
}


def deployments(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == "Deployment"]


def config_map_settings(objects: list[dict[str, Any]]) -> dict[str, str]:
    return find(objects, "ConfigMap")["data"]


@pytest.mark.parametrize("source", ["web-identity", "broker"])
def test_mirrors_and_sidecar_env_reach_the_webhook_and_the_broker(source: str) -> None:
    objects = render.render_objects({**VALUES, "credentialSource": source})
    for obj in objects:
        if obj["kind"] in ("Deployment", "ConfigMap"):
            validate_strict(obj)
    data = config_map_settings(objects)
    assert data["SIDECRED_SIDECAR_REPOSITORIES"] == MIRROR
    assert json.loads(data["SIDECRED_SIDECAR_EXTRA_ENV"]) == PROXY
    assert json.loads(data["SIDECRED_SIDECAR_ACCEPTED_ENV"]) == OLD_PROXY
    for deployment in deployments(objects):  # the webhook and (broker source) the broker
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        (source_ref,) = container["envFrom"]
        assert source_ref["configMapRef"]["name"] == find(objects, "ConfigMap")["metadata"]["name"]
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    readable = {k: v for k, v in data.items() if not k.startswith("SIDECRED_BROKER_CA")}
    readable["SIDECRED_CREDENTIAL_SOURCE"] = "web-identity"  # the broker's CA is a mounted file
    config = config_from_args(parser.parse_args([]), readable)
    assert "registry.corp.example/platform/credproxy" in config.sidecar_repository_set
    assert config.sidecar_extra_env == (("HTTPS_PROXY", "http://proxy.corp.example:3128"),)
    assert ("HTTPS_PROXY", "http://old-proxy.corp.example:3128") in config.configured_sidecar_env


def test_by_default_no_mirror_and_no_sidecar_env() -> None:
    data = config_map_settings(render.render_objects({}))
    assert not {"SIDECRED_SIDECAR_REPOSITORIES", "SIDECRED_SIDECAR_EXTRA_ENV"} & set(data)


def test_the_validating_webhook_is_sent_pods_running_a_listed_mirror() -> None:
    pod = cat.with_spec(
        cat.BARE_POD,
        containers=[{"name": "x", "image": "registry.corp.example/platform/credproxy:9"}],
    )
    listed = find(render.render_objects(VALUES), "ValidatingWebhookConfiguration")
    unlisted = find(render.render_objects({}), "ValidatingWebhookConfiguration")
    assert configuration_outcome(listed, cat.pod_request(pod)) == CALLED
    assert configuration_outcome(unlisted, cat.pod_request(pod)) == SKIPPED


@pytest.mark.parametrize("value_set", ["defaults", "custom"])
def test_webhook_and_broker_drain_on_the_way_out(value_set: str) -> None:
    values = {} if value_set == "defaults" else VALUES
    drain = {"preStopSeconds": 5, "delaySeconds": 5, "terminationGracePeriodSeconds": 30}
    drain = drain if value_set == "defaults" else VALUES["drain"]
    objects = render.render_objects({**values, "credentialSource": "broker"})
    assert len(deployments(objects)) == 2
    for deployment in deployments(objects):
        validate_strict(deployment)
        spec = deployment["spec"]["template"]["spec"]
        assert spec["terminationGracePeriodSeconds"] == drain["terminationGracePeriodSeconds"]
        (container,) = spec["containers"]
        assert container["lifecycle"] == {
            "preStop": {"sleep": {"seconds": drain["preStopSeconds"]}}
        }
        args = build_parser().parse_args(container["args"][1:])  # the server's own parser
        assert shutdown_delay(args, {}) == drain["delaySeconds"]
        assert args.host == ""  # both address families


def test_without_a_prestop_sleep_there_is_no_lifecycle() -> None:
    objects = render.render_objects(
        {"drain": {"preStopSeconds": 0, "delaySeconds": 5, "terminationGracePeriodSeconds": 15}}
    )
    (container,) = find(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert "lifecycle" not in container


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (
            {
                "drain": {
                    "preStopSeconds": 10,
                    "delaySeconds": 10,
                    "terminationGracePeriodSeconds": 20,
                }
            },
            "drain.terminationGracePeriodSeconds (20) must be at least",
        ),
        (
            {"sidecar": {"extraEnv": [{"name": "HTTPS_PROXY", "valueFrom": {"secretKeyRef": {}}}]}},
            "extraEnv",
        ),
        ({"sidecar": {"extraEnv": [{"name": "NO_PROXY", "value": 1}]}}, "extraEnv"),
        ({"sidecar": {"repositories": ["mirror.example/x' || true || '"]}}, "repositories"),
    ],
    ids=["grace-too-short", "env-value-from", "env-number", "cel-injection-mirror"],
)
def test_bad_rollout_values_fail_to_render(values: dict[str, Any], expected: str) -> None:
    with pytest.raises(helm_python.HelmError) as caught:
        render.render_documents(values)
    assert expected in str(caught.value)


def test_the_guides_proxy_and_mirror_commands_render() -> None:
    """deploy/README.md's `--set-json sidecar.extraEnv=...` and `sidecar.repositories={...}`."""
    guide = (render.DEPLOY_DIR / "README.md").read_text()
    env_json = guide.split("--set-json 'sidecar.extraEnv=", 1)[1].split("'\n", 1)[0]
    repositories = guide.split("--set 'sidecar.repositories={", 1)[1].split("}'", 1)[0]
    values = {
        "sidecar": {"extraEnv": json.loads(env_json), "repositories": repositories.split(",")}
    }
    data = config_map_settings(render.render_objects(values))
    assert json.loads(data["SIDECRED_SIDECAR_EXTRA_ENV"])[0]["name"] == "HTTPS_PROXY"
    assert data["SIDECRED_SIDECAR_REPOSITORIES"] == "ghcr.io/sidecred/sidecred-sidecar"
