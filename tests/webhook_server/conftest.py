"""Fixtures for the webhook edge: the API server stub and a real client against it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kubernetes import client

from sidecred.dev.kube_stub import KubeApiStub
from sidecred.dev.processes import wait_until
from sidecred.kube.watch import NamespaceCache

POLICY = {"iam.amazonaws.com/permitted": "arn:aws:iam::111122223333:role/shop-.*"}


def start_stub() -> KubeApiStub:
    """An API server stub holding the "shop" (with POLICY) and "default" namespaces."""
    api = KubeApiStub()
    api.add_namespace("shop", POLICY)
    api.add_namespace("default")
    api.start()
    return api


@pytest.fixture
def stub() -> Iterator[KubeApiStub]:
    api = start_stub()
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
