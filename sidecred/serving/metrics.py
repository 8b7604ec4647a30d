"""Prometheus metrics both servers keep, in a registry of their own per process.

A private registry keeps the exposition to what a server means to say and lets
tests build as many apps as they like in one process.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)

# Request latency buckets: the API server's webhook timeout is seconds, the
# steady state (cache hit, pure decision) is well under 10 ms.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class ServerMetrics:
    """The registry, Kubernetes API calls, namespace lookups and the serving certificate."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.namespace_lookups = Counter(
            "sidecred_namespace_cache_lookups",
            "Namespace lookups, by result: hit (cache), miss (fetched), not-found, unavailable.",
            ["result"],
            registry=self.registry,
        )
        self.kube_api_calls = Counter(
            "sidecred_kubernetes_api_calls",
            "Calls to the Kubernetes API, by verb (list, watch, get) and result.",
            ["verb", "result"],
            registry=self.registry,
        )
        self.certificate_expiry = Gauge(
            "sidecred_certificate_expiry_timestamp_seconds",
            "Expiry (Unix time) of the TLS serving certificate in use; alert well before it.",
            registry=self.registry,
        )

    def watch_certificate(self, not_after: Callable[[], float]) -> None:
        """Report the serving certificate's expiry as `not_after()` gives it at scrape time."""
        self.certificate_expiry.set_function(not_after)

    def record_api_call(self, verb: str, result: str) -> None:
        self.kube_api_calls.labels(verb=verb, result=result).inc()

    def record_namespace_lookup(self, source: str) -> None:
        result = {"cache": "hit", "api": "miss"}.get(source, source)
        self.namespace_lookups.labels(result=result).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
