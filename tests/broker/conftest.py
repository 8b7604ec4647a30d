"""A cluster for the broker: the API stub (namespaces, pods, TokenReview), moto as STS, the broker."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sidecred.dev.kube_stub import KubeApiStub
from sidecred.dev.processes import wait_until
from sidecred.dev.token_review import TokenAuthority
from tests.support.sts import MotoServer, start_moto, stop_moto

from .broker_process import BrokerProcess, start_broker
from .pods import POLICY, broker_pod

_names = itertools.count(1)


@dataclass
class Cluster:
    stub: KubeApiStub
    authority: TokenAuthority
    sts: MotoServer
    broker: BrokerProcess
    tmp: Path

    def add_pod(self, prefix: str = "web", **kwargs: Any) -> tuple[dict[str, Any], str]:
        """A new injected broker-mode pod (unique name) and its broker-audience token."""
        kwargs.setdefault("config", self.broker.config)
        pod = self.stub.put("pods", broker_pod(f"{prefix}-{next(_names)}", **kwargs))
        return pod, self.authority.pod_token(pod)

    def wait_for_status(self, token: str, status: int, what: str) -> Any:
        """Poll the broker until an issuance answers `status` (a watch event has to arrive)."""
        return self._wait(token, lambda r: r.status_code == status, what)

    def wait_for_code(self, token: str, code: str, what: str) -> Any:
        """Poll the broker until an issuance is refused with `code`."""
        return self._wait(token, lambda r: r.status_code != 200 and r.json()["code"] == code, what)

    def _wait(self, token: str, done: Callable[[Any], bool], what: str) -> Any:
        answers: list[Any] = []

        def answered() -> bool:
            answers.append(self.broker.issue(token))
            return done(answers[-1])

        wait_until(answered, timeout=20, what=what)
        return answers[-1]


def start_stub() -> tuple[KubeApiStub, TokenAuthority]:
    stub = KubeApiStub()
    stub.add_namespace("shop", POLICY)
    stub.add_namespace("default")
    authority = TokenAuthority(stub)
    stub.start()
    return stub, authority


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("broker")
    stub, authority = start_stub()
    sts = start_moto()
    broker = start_broker(tmp, stub.url, sts.url)
    world = Cluster(stub, authority, sts, broker, tmp)
    try:
        yield world
    finally:
        world.broker.stop()
        stop_moto(sts)
        stub.stop()
