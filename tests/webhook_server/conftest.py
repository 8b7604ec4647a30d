"""Fixtures for the webhook edge: the API server stub and a real client against it."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from kubernetes import client

from webhook.kube import NamespaceCache
from webhook.kube_stub import KubeApiStub

POLICY = {"iam.amazonaws.com/permitted": "arn:aws:iam::111122223333:role/shop-.*"}


def wait_until(predicate: Callable[[], object], timeout: float = 10.0, what: str = "") -> None:
    """Poll `predicate` until it is truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        time.sleep(0.02)


@pytest.fixture
def stub() -> Iterator[KubeApiStub]:
    api = KubeApiStub()
    api.add_namespace("shop", POLICY)
    api.add_namespace("default")
    api.start()
    yield api
    api.stop()


def core_api(url: str) -> client.CoreV1Api:
    configuration = client.Configuration(host=url)
    return client.CoreV1Api(client.ApiClient(configuration))


@pytest.fixture
def cache(stub: KubeApiStub) -> Iterator[NamespaceCache]:
    namespaces = NamespaceCache(core_api(stub.url), watch_timeout_seconds=30)
    namespaces.start()
    wait_until(lambda: namespaces.synced, what="namespace cache sync")
    yield namespaces
    namespaces.stop()
