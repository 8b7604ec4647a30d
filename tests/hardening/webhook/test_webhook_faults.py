"""Webhook faults: the API server goes away mid-watch and comes back.

The real kubernetes client against the stub API server. While the server is
away, a cached namespace is still decided by its last known policy (never
wrongly allowed or denied), an uncached one is refused (fail closed); once it
is back, changes made while it was away are seen. Certificate rotation is
covered by tests/webhook_server/test_tls_reload.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kubernetes import client

from sidecred.dev.kube_stub import KubeApiStub
from sidecred.dev.processes import wait_until
from sidecred.kube.watch import NamespaceCache
from sidecred.pods.settings import Settings
from sidecred.webhook.decide import decide_mutation, namespace_to_lookup
from tests.hardening.webhook.strategies import BASE_ROLE_ARN, admission_request

CONFIG = Settings(base_role_arn=BASE_ROLE_ARN)
READER_ONLY = {"iam.amazonaws.com/permitted": BASE_ROLE_ARN + "reader"}
WRITER_ONLY = {"iam.amazonaws.com/permitted": BASE_ROLE_ARN + "writer"}


@pytest.fixture
def stub() -> Iterator[KubeApiStub]:
    api = KubeApiStub()
    api.add_namespace("shop", READER_ONLY)
    api.start()
    yield api
    api.stop()


@pytest.fixture
def cache(stub: KubeApiStub) -> Iterator[NamespaceCache]:
    api = client.CoreV1Api(client.ApiClient(client.Configuration(host=stub.url)))
    namespaces = NamespaceCache(api, watch_timeout_seconds=30)
    namespaces.start()
    wait_until(lambda: namespaces.synced, what="namespace cache sync")
    yield namespaces
    namespaces.stop()


def admit(cache: NamespaceCache, role: str, namespace: str = "shop") -> bool:
    """The app's path: look the namespace up, then decide."""
    pod = {
        "metadata": {"namespace": namespace, "annotations": {"iam.amazonaws.com/role": role}},
        "spec": {"containers": [{"name": "app", "image": "app:1"}]},
    }
    request = dict(admission_request(pod), namespace=namespace)
    name = namespace_to_lookup(request, CONFIG)
    assert name == namespace
    lookup = cache.get(name)
    decision = decide_mutation(request, lookup.object, CONFIG, namespace_error=lookup.error)
    return decision.allowed


def test_outage_keeps_cached_decisions_and_resync_sees_changes_made_meanwhile(
    cache: NamespaceCache, stub: KubeApiStub
) -> None:
    assert admit(cache, "reader") and not admit(cache, "writer")
    stub.stop()
    # Changed while the API server is unreachable to the webhook: flip the policy and add
    # a namespace. The stub keeps its state, as etcd would.
    stub.set_annotations("shop", WRITER_ONLY)
    stub.add_namespace("fresh", READER_ONLY)
    # Meanwhile: the cached namespace keeps its last known policy, both ways...
    for _ in range(20):
        assert admit(cache, "reader") is True
        assert admit(cache, "writer") is False
    # ...and an uncached one is refused, never guessed.
    assert admit(cache, "reader", namespace="fresh") is False
    stub.start()
    wait_until(lambda: admit(cache, "writer"), what="the policy change made during the outage")
    assert admit(cache, "reader") is False
    wait_until(lambda: cache.cached("fresh") is not None, what="the namespace added meanwhile")
    assert admit(cache, "reader", namespace="fresh") is True


def test_outage_with_compacted_history_relists_and_drops_deleted_namespaces(
    cache: NamespaceCache, stub: KubeApiStub
) -> None:
    stub.add_namespace("gone", READER_ONLY)
    wait_until(lambda: cache.cached("gone") is not None, what="ADDED")
    stub.stop()
    stub.delete_namespace("gone")
    stub.set_annotations("shop", WRITER_ONLY)
    stub.compact()  # the watch's resourceVersion is now too old: 410, then a relist
    assert admit(cache, "reader", namespace="gone") is True  # cached, API away
    stub.start()
    wait_until(
        lambda: cache.cached("gone") is None, what="the relist to drop the deleted namespace"
    )
    assert admit(cache, "writer") is True
    assert admit(cache, "reader", namespace="gone") is False  # now not found: refused
