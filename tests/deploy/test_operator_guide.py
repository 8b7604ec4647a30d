"""deploy/README.md, the operator's guide: its YAML is valid and its metrics exist."""

from __future__ import annotations

import re

import helm_python
import yaml
from prometheus_client.parser import text_string_to_metric_families

from deploy import render
from sidecred.pods.sidecar_spec import HEALTH_PORT_NAME
from sidecred.webhook.metrics import WebhookMetrics
from tests.deploy.chart_support import CUSTOM_KINDS, validate_strict

GUIDE = render.DEPLOY_DIR / "README.md"
CUSTOM = CUSTOM_KINDS | {"PodMonitor"}


def _yaml_blocks() -> list[object]:
    blocks = re.findall(r"```yaml\n(.*?)```", GUIDE.read_text(), flags=re.S)
    assert blocks
    return [yaml.safe_load(block) for block in blocks]


def test_every_kubernetes_object_in_the_guide_is_valid() -> None:
    objects = [b for b in _yaml_blocks() if isinstance(b, dict) and "kind" in b]
    assert {"NetworkPolicy", "PodMonitor"} <= {o["kind"] for o in objects}
    for obj in objects:
        if obj["kind"] not in CUSTOM:
            validate_strict(obj)


def test_metadata_policy_blocks_exactly_the_metadata_addresses() -> None:
    (policy,) = [
        b for b in _yaml_blocks() if isinstance(b, dict) and b.get("kind") == "NetworkPolicy"
    ]
    assert policy["spec"]["podSelector"] == {} and policy["spec"]["policyTypes"] == ["Egress"]
    (rule,) = policy["spec"]["egress"]
    blocks = [peer["ipBlock"] for peer in rule["to"]]
    assert blocks == [
        {"cidr": "0.0.0.0/0", "except": ["169.254.169.254/32"]},
        {"cidr": "::/0", "except": ["fd00:ec2::254/128"]},
    ]
    assert "--http-put-response-hop-limit 1 --http-tokens required" in GUIDE.read_text()


def test_pod_monitor_scrapes_the_sidecars_named_health_port() -> None:
    (monitor,) = [
        b for b in _yaml_blocks() if isinstance(b, dict) and b.get("kind") == "PodMonitor"
    ]
    assert monitor["spec"]["selector"]["matchLabels"] == {"sidecred.dev/injected": "true"}
    assert monitor["spec"]["podMetricsEndpoints"] == [
        {"port": HEALTH_PORT_NAME, "path": "/metrics"}
    ]


def test_guide_lists_every_webhook_metric() -> None:
    """Every family the webhook exposes, under the name Prometheus stores it."""
    text = WebhookMetrics().render().decode()
    suffix = {"counter": "_total"}
    names = {f.name + suffix.get(f.type, "") for f in text_string_to_metric_families(text)}
    assert len(names) >= 6
    guide = GUIDE.read_text()
    missing = sorted(n for n in names if f"`{n}`" not in guide)
    assert not missing, missing


def test_private_registry_command_sets_the_sidecars_pull_secret() -> None:
    """The guide's `--set sidecar.imagePullSecrets=...`, read by Helm's own --set parser,
    renders the webhook option naming the Secret the guide creates in each namespace."""
    text = GUIDE.read_text()
    (flag,) = re.findall(r"--set '(sidecar\.imagePullSecrets=[^']*)'", text)
    created = set(re.findall(r"create secret docker-registry (\S+)", text))
    objects = render.render_objects(helm_python.parse_set_string(flag))
    (settings,) = [o["data"] for o in objects if o["kind"] == "ConfigMap"]
    names = settings["SIDECRED_SIDECAR_IMAGE_PULL_SECRETS"].split(",")
    assert names and set(names) <= created
