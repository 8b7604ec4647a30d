"""The issuer forgets a pod at once: its credentials, its reviews, and an STS answer still on its way."""

from __future__ import annotations

import concurrent.futures
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from sidecred.broker.authorise import Caller, Grant
from sidecred.broker.identity import Identifier
from sidecred.broker.issuer import Issuer
from sidecred.broker.jwt_verify import Verified
from sidecred.broker.metrics import BrokerMetrics
from sidecred.broker.sidecar_check import broker_sidecar_problem
from sidecred.dev.processes import wait_until
from sidecred.kube.watch import CACHE, Lookup
from sidecred.pods.refusal import Refusal
from sidecred.sidecar.credentials import Credentials

from .pods import CONFIG, broker_pod, namespace

NOW = 1_800_000_000.0


class World:
    """One pod as the caches hold it, a verifier that names it, and an STS that counts."""

    def __init__(self) -> None:
        self.pod = broker_pod(config=CONFIG)
        meta = self.pod["metadata"]
        self.caller = Caller("shop", "web", meta["name"], meta["uid"])
        self.forgotten: list[str] = []
        self.sts_calls = 0
        self.release = threading.Event()
        self.release.set()
        self.entered = threading.Event()

    # verifier, reviewer, pods, namespaces
    last_error = ""

    @property
    def synced(self) -> bool:
        return True

    def verify(self, token: str) -> Verified | Refusal:
        return Verified(self.caller, NOW + 3600)

    def review(self, token: str, verified: Verified) -> Caller | Refusal:
        raise AssertionError("a cached pod needs no review")

    def forget(self, uid: str) -> int:
        self.forgotten.append(uid)
        return 0

    def cached(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.pod

    def get(self, *key: str) -> Lookup:
        return Lookup(namespace() if len(key) == 1 else self.pod, CACHE)

    # STS
    def assume(self, grant: Grant) -> Credentials:
        self.sts_calls += 1
        self.entered.set()
        assert self.release.wait(10)
        expires = datetime.fromtimestamp(NOW, UTC) + timedelta(hours=1)
        return Credentials(
            f"ASIA{self.sts_calls}", "s", "t", expires, "123456789012", grant.role_arn
        )

    def issuer(self, metrics: BrokerMetrics | None = None) -> Issuer:
        return Issuer(
            CONFIG,
            Identifier(self, self, self),
            self,
            self,
            broker_sidecar_problem,
            metrics or BrokerMetrics(),
            clock=lambda: NOW,
        )


def test_forgetting_a_pod_drops_its_credentials_and_reviews() -> None:
    world = World()
    issuer = world.issuer()
    assert issuer.issue("Bearer t").status == 200
    assert issuer.issue("Bearer t").status == 200
    assert world.sts_calls == 1  # the second was handed the held generation
    issuer.forget(world.caller.pod_uid)
    assert world.forgotten == [world.caller.pod_uid]
    assert issuer.issue("Bearer t").status == 200
    assert world.sts_calls == 2  # nothing held: a new STS call


def test_an_sts_answer_for_a_pod_forgotten_meanwhile_is_given_but_not_kept() -> None:
    world = World()
    world.release.clear()
    metrics = BrokerMetrics()
    issuer = world.issuer(metrics)
    waiting = metrics.credential_cache.labels("hit")
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        answers = [pool.submit(issuer.issue, "Bearer t") for _ in range(4)]
        assert world.entered.wait(10)
        wait_until(lambda: waiting._value.get() == 3, what="three requests waiting on the call")
        issuer.forget(world.caller.pod_uid)
        world.release.set()
        statuses = [answer.result(timeout=20).status for answer in answers]
    assert statuses == [200] * 4
    assert world.sts_calls == 1  # the requests that came together shared the call
    assert issuer.issue("Bearer t").status == 200
    assert world.sts_calls == 2  # the answer was not kept: a new STS call
