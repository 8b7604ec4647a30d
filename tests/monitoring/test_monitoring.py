"""deploy/monitoring: every metric the Grafana dashboard and the PrometheusRule use exists in
sidecred's code (expressions parsed as PromQL, not grepped), and the README documents every
metric the code exposes."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml
from prometheus_client import CollectorRegistry

from sidecred.broker.metrics import BrokerMetrics
from sidecred.webhook.event_reporter import ReporterMetrics
from sidecred.webhook.metrics import WebhookMetrics

REPO = Path(__file__).resolve().parents[2]
MONITORING = REPO / "deploy" / "monitoring"
# Not sidecred's: Prometheus's own scrape health.
EXTERNAL_METRICS = {"up"}


def selectors(node: Any) -> Iterator[str]:
    """Metric names of every vector selector in a parsed PromQL expression."""
    if isinstance(node, promql_parser.VectorSelector):
        if node.name:
            yield node.name
        return
    if isinstance(node, promql_parser.MatrixSelector):
        yield from selectors(node.vector_selector)
        return
    for attribute in ("expr", "lhs", "rhs", "param"):
        child = getattr(node, attribute, None)
        if child is not None:
            yield from selectors(child)
    for arg in getattr(node, "args", None) or []:
        yield from selectors(arg)


def metric_names(expr: str) -> set[str]:
    # Grafana substitutes $__rate_interval before Prometheus sees the query.
    return set(selectors(promql_parser.parse(expr.replace("$__rate_interval", "5m"))))


def dashboard_exprs() -> dict[str, list[str]]:
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    return {p["title"]: [t["expr"] for t in p["targets"]] for p in dashboard["panels"]}


def rules() -> list[dict[str, Any]]:
    document = yaml.safe_load((MONITORING / "prometheusrule.yaml").read_text())
    assert document["kind"] == "PrometheusRule"
    return [rule for group in document["spec"]["groups"] for rule in group["rules"]]


def registries() -> list[CollectorRegistry]:
    """The webhook's registry (with the event reporter's metrics) and the broker's."""
    webhook = WebhookMetrics().registry
    ReporterMetrics(webhook)
    return [webhook, BrokerMetrics().registry]


def families() -> set[str]:
    """Every prometheus-client family, under the name Prometheus stores it."""
    return {
        f.name + ("_total" if f.type == "counter" else "")
        for registry in registries()
        for f in registry.collect()
    }


def webhook_samples() -> set[str]:
    """Every sample name the webhook and the broker expose (prometheus-client registries)."""
    names = set()
    for registry in registries():
        for family in registry.collect():
            names.add(family.name)
            names |= {f"{family.name}{s}" for s in ("_total", "_bucket", "_count", "_sum")}
    return names


def hand_written_samples(folder: str) -> set[str]:
    """Names in a component that writes the exposition by hand (the sidecar, to stay lean)."""
    text = "\n".join(p.read_text() for p in (REPO / folder).glob("*.py"))
    return set(re.findall(r"\bsidecred_[a-z0-9_]+", text))


KNOWN = webhook_samples() | hand_written_samples("sidecar")


def test_the_selector_walk_finds_every_metric() -> None:
    expr = 'absent(up{job="x"} == 1) and on() histogram_quantile(0.9, sum by (le) (rate(a_bucket[5m]))) - time() > scalar(max(b))'
    assert metric_names(expr) == {"up", "a_bucket", "b"}


@pytest.mark.parametrize("title", sorted(dashboard_exprs()))
def test_dashboard_panel_uses_only_real_metrics(title: str) -> None:
    for expr in dashboard_exprs()[title]:
        names = metric_names(expr)
        assert names, expr
        assert names <= KNOWN | EXTERNAL_METRICS, names - KNOWN


@pytest.mark.parametrize("rule", rules(), ids=lambda r: r["alert"])
def test_alert_uses_only_real_metrics(rule: dict[str, Any]) -> None:
    names = metric_names(rule["expr"])
    assert names and names <= KNOWN | EXTERNAL_METRICS, names - KNOWN
    assert rule["labels"]["severity"] in ("critical", "warning", "info")
    assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_dashboard_has_the_panels_operators_need() -> None:
    titles = set(dashboard_exprs())
    for wanted in ("Admissions by decision and reason", "Admission latency p99", "Sidecars not ready", "STS errors by code", "Credential expiry headroom"):  # fmt: skip
        assert wanted in titles


def test_rules_alert_on_webhook_down_certificates_and_sidecars_without_credentials() -> None:
    alerts = {rule["alert"]: rule for rule in rules()}
    assert "up" in metric_names(alerts["SidecredWebhookDown"]["expr"])
    assert metric_names(alerts["SidecredCertificateExpiresSoon"]["expr"]) == {"sidecred_certificate_expiry_timestamp_seconds"}  # fmt: skip
    assert "sidecred_sidecars_not_ready" in metric_names(alerts["SidecredSidecarsWithoutCredentials"]["expr"])  # fmt: skip


def test_readme_documents_every_metric() -> None:
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Metrics") :]
    documented = families() | hand_written_samples("sidecar")
    assert {"sidecred_broker_issuances_total", "sidecred_pod_events_total", "sidecred_ready"} <= documented  # fmt: skip
    missing = sorted(n for n in documented if f"`{n}`" not in section)
    assert not missing, missing
