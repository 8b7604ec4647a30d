"""Optional operations objects: the ServiceMonitor and the NetworkPolicy."""

from __future__ import annotations

from deploy import render
from tests.deploy.chart_support import find, kinds, rendered


def test_off_by_default() -> None:
    for kind in ("ServiceMonitor", "NetworkPolicy"):
        assert kind not in kinds(rendered("defaults"))


def test_service_monitors_scrape_metrics_over_verified_tls() -> None:
    objects = rendered("monitoring-networkpolicy")
    for name, secret in (("sidecred", "sidecred-tls"), ("sidecred-broker", "sidecred-broker-tls")):
        monitor = find(objects, "ServiceMonitor", name)
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        assert monitor["metadata"]["labels"]["release"] == "prometheus"
        service = find(objects, "Service", name)
        assert monitor["spec"]["selector"]["matchLabels"].items() <= (
            service["metadata"]["labels"].items()
        )
        (endpoint,) = monitor["spec"]["endpoints"]
        assert endpoint["port"] == service["spec"]["ports"][0]["name"]
        assert endpoint["path"] == "/metrics" and endpoint["scheme"] == "https"
        assert endpoint["tlsConfig"] == {
            "serverName": f"{name}.{render.RELEASE_NAMESPACE}.svc",
            "ca": {"secret": {"name": secret, "key": "ca.crt"}},
        }
        # The Service selects its own component only, so each monitor scrapes one.
        other = "broker" if name == "sidecred" else "webhook"
        assert service["metadata"]["labels"]["app.kubernetes.io/component"] != other


def test_network_policies_admit_only_the_serving_ports() -> None:
    objects = rendered("monitoring-networkpolicy")
    for name, port in (("sidecred", 8443), ("sidecred-broker", 8444)):
        policy = find(objects, "NetworkPolicy", name)
        pods = find(objects, "Deployment", name)["spec"]["template"]["metadata"]["labels"]
        assert policy["spec"]["podSelector"]["matchLabels"].items() <= pods.items()
        assert policy["spec"]["policyTypes"] == ["Ingress"]
        assert policy["spec"]["ingress"] == [{"ports": [{"protocol": "TCP", "port": port}]}]
