"""Prometheus metrics for the webhook: the shared server metrics plus admissions."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import Counter, Gauge, Histogram

from sidecred.serving.metrics import LATENCY_BUCKETS, ServerMetrics


class WebhookMetrics(ServerMetrics):
    def __init__(self) -> None:
        super().__init__()
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
        self.request_body_bytes = Gauge(
            "sidecred_request_body_bytes",
            "Bytes of request bodies held now, across all connections (--request-body-budget-mib).",
            registry=self.registry,
        )
        self.bad_requests = Counter(
            "sidecred_bad_requests",
            "Webhook requests that were not a usable AdmissionReview, by HTTP status.",
            ["webhook", "status"],
            registry=self.registry,
        )

    def watch_request_bodies(self, held: Callable[[], float]) -> None:
        self.request_body_bytes.set_function(held)

    def record_admission(
        self, webhook: str, operation: str, allowed: bool, reason: str, seconds: float
    ) -> None:
        result = "allowed" if allowed else "denied"
        self.admissions.labels(webhook, operation, result, reason).inc()
        self.admission_latency.labels(webhook).observe(seconds)
        if not allowed:
            self.policy_denials.labels(webhook, reason).inc()
