"""sidecred's alerts and dashboard (shipped in the chart, rendered into deploy/monitoring):
every metric they use exists in sidecred's code (expressions parsed as PromQL, not grepped),
every alert has a runbook section, jobs follow the release, per-pod signals are aggregated
by namespace, the dashboard filters by cluster, job and namespace with one unit per panel,
and the README documents every metric the code exposes."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml
from prometheus_client import CollectorRegistry

from deploy import render
from sidecred.broker.metrics import BrokerMetrics
from sidecred.webhook.event_reporter import ReporterMetrics
from sidecred.webhook.metrics import WebhookMetrics

REPO = Path(__file__).resolve().parents[2]
MONITORING = REPO / "deploy" / "monitoring"
# Not sidecred's: Prometheus's own scrape health.
EXTERNAL_METRICS = {"up"}


def vector_selectors(node: Any) -> Iterator[promql_parser.VectorSelector]:
    """Every vector selector in a parsed PromQL expression, also inside range selectors."""
    if isinstance(node, promql_parser.VectorSelector):
        yield node
        return
    if isinstance(node, promql_parser.MatrixSelector):
        yield from vector_selectors(node.vector_selector)
        return
    for attribute in ("expr", "lhs", "rhs", "param"):
        child = getattr(node, attribute, None)
        if child is not None:
            yield from vector_selectors(child)
    for arg in getattr(node, "args", None) or []:
        yield from vector_selectors(arg)


def selectors(node: Any) -> Iterator[str]:
    """Metric names of every vector selector in a parsed PromQL expression."""
    return (selector.name for selector in vector_selectors(node) if selector.name)


def metric_names(expr: str) -> set[str]:
    # Grafana substitutes $__rate_interval before Prometheus sees the query.
    return set(selectors(promql_parser.parse(expr.replace("$__rate_interval", "5m"))))


DASHBOARD = render.DASHBOARD_SOURCE
RUNBOOK = REPO / "deploy/monitoring/RUNBOOK.md"
ENABLED = {"metrics": {"prometheusRule": {"enabled": True}, "dashboard": {"enabled": True}}}


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def dashboard_exprs() -> dict[str, list[str]]:
    return {p["title"]: [t["expr"] for t in p["targets"]] for p in dashboard()["panels"]}


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        both = isinstance(value, dict) and isinstance(merged.get(key), dict)
        merged[key] = _merge(merged[key], value) if both else value
    return merged


@functools.cache
def _rendered(values_json: str, name: str) -> str:
    return json.dumps(render.render_objects(json.loads(values_json), name=name))


def chart_objects(values: dict[str, Any] | None = None, name: str = "sidecred") -> list[dict]:
    """The chart rendered with its alerts and dashboard on, and `values`."""
    merged = _merge(ENABLED, values or {})
    return json.loads(_rendered(json.dumps(merged, sort_keys=True), name))


def rule_document(values: dict[str, Any] | None = None, name: str = "sidecred") -> dict:
    (document,) = [o for o in chart_objects(values, name) if o["kind"] == "PrometheusRule"]
    return document


def rules(values: dict[str, Any] | None = None, name: str = "sidecred") -> list[dict[str, Any]]:
    document = rule_document(values, name)
    return [rule for group in document["spec"]["groups"] for rule in group["rules"]]


def all_rules() -> list[dict[str, Any]]:
    """Every alert the chart can render (broker mode, events on)."""
    return rules({"credentialSource": "broker"})


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


@pytest.mark.parametrize(
    "rule", all_rules(), ids=lambda r: f"{r['alert']}-{r['labels']['severity']}"
)
def test_alert_uses_only_real_metrics(rule: dict[str, Any]) -> None:
    names = metric_names(rule["expr"])
    assert names and names <= KNOWN | EXTERNAL_METRICS, names - KNOWN
    assert rule["labels"]["severity"] in ("critical", "warning", "info")
    assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_dashboard_has_the_panels_operators_need() -> None:
    titles = set(dashboard_exprs())
    for wanted in ("Admissions by decision and reason", "Admission latency", "Sidecars without credentials", "Failed credential fetches", "Credential expiry headroom", "Broker issuances"):  # fmt: skip
        assert wanted in titles


def test_rules_alert_on_webhook_down_certificates_and_sidecars_without_credentials() -> None:
    alerts = {rule["alert"]: rule for rule in all_rules()}
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


# --- alerts as the chart ships them ----------------------------------------------------

SIDECAR_METRICS = hand_written_samples("sidecar")


def test_every_alert_links_to_its_runbook_section() -> None:
    runbook_url = yaml.safe_load((render.CHART_DIR / "values.yaml").read_text())["metrics"]["prometheusRule"]["runbookUrl"]  # fmt: skip
    assert runbook_url.endswith("/deploy/monitoring/RUNBOOK.md")
    sections = set(re.findall(r"^## (\w+)$", RUNBOOK.read_text(), re.M))
    alerts = {rule["alert"] for rule in all_rules()}
    assert sections == alerts, sections ^ alerts
    for rule in all_rules():
        assert rule["annotations"]["runbook_url"] == f"{runbook_url}#{rule['alert'].lower()}"
    custom = rules({"metrics": {"prometheusRule": {"runbookUrl": "https://wiki.corp/sidecred"}}})
    assert {r["annotations"]["runbook_url"].split("#")[0] for r in custom} == {"https://wiki.corp/sidecred"}  # fmt: skip


def _job_matchers(node: Any) -> Iterator[str]:
    for selector in vector_selectors(node):
        yield from (m.value for m in selector.matchers.matchers if m.name == "job")


@pytest.mark.parametrize("release", ["sidecred", "platform"])
def test_alert_jobs_are_the_services_the_service_monitors_scrape(release: str) -> None:
    """The Prometheus Operator names a ServiceMonitor's job after the Service; the alerts
    match exactly those names, whatever the release is called."""
    values = {"credentialSource": "broker", "metrics": {"serviceMonitor": {"enabled": True}}}
    objects = chart_objects(values, release)
    monitors = [o for o in objects if o["kind"] == "ServiceMonitor"]
    assert monitors and all("jobLabel" not in m["spec"] for m in monitors)
    services = {
        o["metadata"]["name"]
        for o in objects
        if o["kind"] == "Service"
        and any(
            m["spec"]["selector"]["matchLabels"].items() <= o["spec"]["selector"].items()
            for m in monitors
        )
    }
    jobs = {
        j for r in rules(values, release) for j in _job_matchers(promql_parser.parse(r["expr"]))
    }
    fullname = "sidecred" if release == "sidecred" else f"{release}-sidecred"
    assert jobs == services == {fullname, f"{fullname}-broker"}


def test_broker_down_alert_only_with_the_broker_and_events_alerts_only_with_events() -> None:
    default = {r["alert"] for r in rules()}
    broker = {r["alert"]: r for r in rules({"credentialSource": "broker"})}
    quiet = {r["alert"] for r in rules({"events": {"enabled": False}})}
    assert "SidecredBrokerDown" not in default and "SidecredBrokerStsErrors" not in default
    assert broker["SidecredBrokerDown"]["expr"] == 'absent(up{job="sidecred-broker"} == 1)'
    assert broker["SidecredBrokerDown"]["labels"]["severity"] == "critical"
    events = {"SidecredEventReporterNotLeading", "SidecredSidecarsWithoutCredentials"}
    assert events <= default and not events & quiet
    assert "SidecredWebhookDown" in quiet


@pytest.mark.parametrize(
    "rule", all_rules(), ids=lambda r: f"{r['alert']}-{r['labels']['severity']}"
)
def test_per_pod_signals_alert_once_per_namespace(rule: dict[str, Any]) -> None:
    """Sidecar metrics have a series per pod: an alert on them is aggregated by namespace,
    so a thousand failing pods make one alert per namespace, not a thousand."""
    expr = promql_parser.parse(rule["expr"])
    if not metric_names(rule["expr"]) & SIDECAR_METRICS:
        return
    assert isinstance(expr, promql_parser.BinaryExpr)
    assert isinstance(expr.lhs, promql_parser.AggregateExpr)
    assert expr.lhs.modifier is not None and expr.lhs.modifier.labels == ["namespace"]


def test_the_committed_rules_and_dashboard_are_the_charts() -> None:
    for path in (MONITORING / "prometheusrule.yaml", MONITORING / "prometheusrule-broker.yaml"):
        assert render.manifests()[path] == path.read_text(), f"{path} is stale"
    assert (MONITORING / "grafana-dashboard.json").read_text() == DASHBOARD.read_text()


def test_chart_ships_the_dashboard_for_grafanas_sidecar() -> None:
    (configmap,) = [
        o for o in chart_objects() if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "sidecred-dashboard"
    ]  # fmt: skip
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(configmap["data"]["sidecred.json"]) == dashboard()
    elsewhere = chart_objects({"metrics": {"dashboard": {"namespace": "monitoring"}}})
    (moved,) = [o for o in elsewhere if o["metadata"]["name"] == "sidecred-dashboard"]
    assert moved["metadata"]["namespace"] == "monitoring"
    off = render.render_objects()
    assert not [o for o in off if o["kind"] == "PrometheusRule" or o["metadata"]["name"] == "sidecred-dashboard"]  # fmt: skip


# --- the dashboard ------------------------------------------------------------------------


def _matchers(node: Any) -> Iterator[tuple[str, dict[str, str]]]:
    """(metric, {label: value}) of every vector selector."""
    for selector in vector_selectors(node):
        yield selector.name, {m.name: m.value for m in selector.matchers.matchers}


def test_dashboard_has_cluster_job_and_namespace_variables() -> None:
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
    assert {"datasource", "cluster", "job", "namespace"} <= set(variables)
    for name in ("cluster", "job", "namespace"):
        query = variables[name]["query"]["query"]
        (inner,) = re.findall(r"^label_values\((.+), (\w+)\)$", query)
        assert inner[1] == name
        assert metric_names(inner[0].replace("$cluster", ".*")) <= KNOWN
        assert variables[name]["includeAll"] is True and variables[name]["allValue"] == ".*"


@pytest.mark.parametrize("title", sorted(dashboard_exprs()))
def test_every_panel_follows_the_variables(title: str) -> None:
    """Each selector is narrowed to $cluster, and to $namespace (the sidecars', whose
    series carry the application pods' namespace) or $job (the webhook's and broker's)."""
    for expr in dashboard_exprs()[title]:
        for metric, labels in _matchers(
            promql_parser.parse(expr.replace("$__rate_interval", "5m"))
        ):
            assert labels.get("cluster") == "$cluster", (metric, expr)
            wanted = "namespace" if metric in SIDECAR_METRICS else "job"
            assert labels.get(wanted) == f"${wanted}", (metric, expr)


def _unit_kind(expr: str) -> str:
    """seconds (quantiles, time left), per-second (rates) or count (gauges, increases)."""
    if "histogram_quantile" in expr or "time()" in expr:
        return "seconds"
    if re.search(r"\b(rate|irate)\(", expr):
        return "per-second"
    return "count"


UNITS = {"seconds": {"s"}, "per-second": {"reqps", "ops"}, "count": {"short"}}


@pytest.mark.parametrize("title", sorted(dashboard_exprs()))
def test_no_panel_mixes_units(title: str) -> None:
    (panel,) = [p for p in dashboard()["panels"] if p["title"] == title]
    kinds = {_unit_kind(t["expr"]) for t in panel["targets"]}
    assert len(kinds) == 1, (title, kinds)
    assert panel["fieldConfig"]["defaults"]["unit"] in UNITS[kinds.pop()]
