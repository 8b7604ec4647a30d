"""Prometheus metrics for the webhook, in a registry of their own.

A private registry keeps the exposition to what the webhook means to say and
lets tests build as many apps as they like in one process.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

# Admission latency buckets: the API server's webhook timeout is seconds, the
# steady state (cache hit, pure decision) is well under 10 ms.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class WebhookMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.admissions = Counter(
            "sidecred_admissions",
            "Admission reviews answered, by webhook, operation, result and reason.",
            ["webhook", "operation", "result", "reason"],
            registry=self.registry,
        )
        self.admission_latency = Histogram(
            "sidecred_admission_duration_seconds",
            "Time to answer an admission review, from body read to response.",
            ["webhook"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.policy_denials = Counter(
            "sidecred_policy_denials",
            "Admissions denied, by webhook and reason.",
            ["webhook", "reason"],
            registry=self.registry,
        )
        self.bad_requests = Counter(
            "sidecred_bad_requests",
            "Webhook requests that were not a usable AdmissionReview, by HTTP status.",
            ["webhook", "status"],
            registry=self.registry,
        )
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

    def record_admission(
        self, webhook: str, operation: str, allowed: bool, reason: str, seconds: float
    ) -> None:
        result = "allowed" if allowed else "denied"
        self.admissions.labels(webhook, operation, result, reason).inc()
        self.admission_latency.labels(webhook).observe(seconds)
        if not allowed:
            self.policy_denials.labels(webhook, reason).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
