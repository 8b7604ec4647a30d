"""Optional operations objects: the ServiceMonitor and the NetworkPolicy."""

from __future__ import annotations

from deploy import render
from tests.deploy.chart_support import find, kinds, rendered, rendered_hooks


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


def test_the_webhook_takes_connections_only_from_the_api_server_when_its_ranges_are_given() -> None:
    objects = rendered("explain-denials")
    policy = find(objects, "NetworkPolicy", "sidecred")
    (rule,) = policy["spec"]["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 8443}]
    blocks = [peer["ipBlock"]["cidr"] for peer in rule["from"] if "ipBlock" in peer]
    assert blocks == ["10.0.0.0/24", "10.0.1.0/24"]
    selectors = [peer for peer in rule["from"] if "ipBlock" not in peer]
    (test_pod,) = rendered_hooks("explain-denials")
    assert selectors[0]["podSelector"]["matchLabels"].items() <= (
        test_pod["metadata"]["labels"].items()
    )  # `helm test` still reaches it
    assert selectors[1] == {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}
    }
    for peer in selectors[:1]:
        assert "namespaceSelector" not in peer  # the release namespace only
