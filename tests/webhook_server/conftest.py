"""Fixtures for the webhook edge: the API server stub and a real client against it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from kubernetes import client

from sidecred.dev.kube_stub import KubeApiStub
from sidecred.dev.processes import wait_until
from sidecred.kube.watch import NamespaceCache

from .webhook_process import WebhookProcess, start_webhook

POLICY = {"iam.amazonaws.com/permitted": "arn:aws:iam::111122223333:role/shop-.*"}


def start_stub() -> KubeApiStub:
    """An API server stub holding the "shop" (with POLICY) and "default" namespaces."""
    api = KubeApiStub()
    api.add_namespace("shop", POLICY)
    api.add_namespace("default")
    api.start()
    return api


def serve_stub() -> Iterator[KubeApiStub]:
    api = start_stub()
    yield api
    api.stop()


stub = pytest.fixture(serve_stub, name="stub")
# One stub for a whole module, shared with the webhook process the module starts once.
module_stub = pytest.fixture(serve_stub, scope="module", name="module_stub")


def module_webhook(name: str, *flags: str) -> Callable[..., Iterator[WebhookProcess]]:
    """A module-scoped `webhook` fixture: one `sidecred webhook` process on module_stub."""

    @pytest.fixture(scope="module", name="webhook")
    def webhook(
        module_stub: KubeApiStub, tmp_path_factory: pytest.TempPathFactory
    ) -> Iterator[WebhookProcess]:
        process = start_webhook(tmp_path_factory.mktemp(name), module_stub.url, *flags)
        yield process
        process.stop()

    return webhook


@contextmanager
def webhook_on_stub(tmp: Path, *flags: str) -> Iterator[WebhookProcess]:
    """A `sidecred webhook` process started with flags on an API server stub of its own."""
    api = start_stub()
    try:
        process = start_webhook(tmp, api.url, *flags)
        try:
            yield process
        finally:
            process.stop()
    finally:
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
