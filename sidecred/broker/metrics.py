"""Prometheus metrics for the broker: the shared server metrics plus issuance."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from sidecred.kube.events import EventMetrics
from sidecred.serving.metrics import LATENCY_BUCKETS, ServerMetrics


class BrokerMetrics(ServerMetrics):
    """The shared server metrics (registry, `render`, Kubernetes API calls) with the broker's own."""

    def __init__(self) -> None:
        super().__init__()
        self.issuances = Counter(
            "sidecred_broker_issuances",
            "Credential requests answered, by result (issued, or the refusal's code) and role "
            "(pod: the pod's role; container: a container's own).",
            ["result", "role"],
            registry=self.registry,
        )
        self.issuance_latency = Histogram(
            "sidecred_broker_issuance_duration_seconds",
            "Time to answer a credential request.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.sts_calls = Counter(
            "sidecred_broker_sts_calls",
            "sts:AssumeRole calls, by result: ok, or STS's error code.",
            ["result"],
            registry=self.registry,
        )
        self.credential_cache = Counter(
            "sidecred_broker_credential_cache",
            "Issuances by whether the pod's current credential generation was reused (hit) "
            "or fetched (miss).",
            ["result"],
            registry=self.registry,
        )
        self.token_verifications = Counter(
            "sidecred_broker_token_verifications",
            "Bearer tokens verified locally (JWKS signature and claims), by result: verified, "
            "or the refusal's code.",
            ["result"],
            registry=self.registry,
        )
        self.token_reviews = Counter(
            "sidecred_broker_token_reviews",
            "TokenReviews for verified tokens whose pod the cache does not hold, by result: hit "
            "(cached answer), authenticated, refused, error.",
            ["result"],
            registry=self.registry,
        )
        self.signing_key_fetches = Counter(
            "sidecred_broker_signing_key_fetches",
            "Fetches of the cluster's service-account issuer and JWKS, by reason (start, "
            "refresh, unknown-kid) and result (ok, error, or the HTTP status).",
            ["reason", "result"],
            registry=self.registry,
        )
        self.forgotten_pods = Counter(
            "sidecred_broker_forgotten_pods",
            "Pods whose state (credentials, token reviews) was dropped because the pod watch "
            "reported them deleted or out of its selector.",
            registry=self.registry,
        )

        self.pod_events = EventMetrics(self.registry)

    def record_token_review(self, result: str) -> None:
        self.token_reviews.labels(result=result).inc()

    def record_token_verification(self, result: str) -> None:
        self.token_verifications.labels(result=result).inc()

    def record_signing_key_fetch(self, reason: str, result: str) -> None:
        self.signing_key_fetches.labels(reason=reason, result=result).inc()
