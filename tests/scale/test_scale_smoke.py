"""Smoke test at 2,000 injected pods (and 1,000 ordinary ones): the broker's caches list them
page by page, hold only the injected ones, check each one's sidecar once as it arrives and
find it canonical, and keep under 2 KB per pod and 1 KB per namespace. The full scale runs
are bench/scale.py's."""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from kubernetes import client

from sidecred.broker.sidecar_check import broker_sidecar_problem
from sidecred.dev.cluster import (
    PodFactory,
    broker_settings,
    cluster_pods,
    namespace_names,
    namespace_object,
)
from sidecred.dev.kube_stub import KubeApiStub
from sidecred.dev.processes import wait_until
from sidecred.kube.projection import PodProjector
from sidecred.kube.watch import CACHE, LIST_PAGE_SIZE, NamespaceCache, PodCache
from tests.broker.pods import CONFIG

INJECTED, ORDINARY, NAMESPACES = 2000, 1000, 400
CONFIG_2K = broker_settings(CONFIG.broker_ca)


@pytest.fixture(scope="module")
def stub() -> Iterator[KubeApiStub]:
    names = namespace_names(NAMESPACES)
    factory = PodFactory(CONFIG_2K)
    with KubeApiStub() as api:
        api.put_many("namespaces", (namespace_object(name) for name in names))
        api.put_many("pods", cluster_pods(factory, names, INJECTED, ORDINARY))
        yield api


def retained(start: object) -> int:
    """Bytes allocated since `tracemalloc` started and still held, after a collection."""
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def test_two_thousand_pods_list_in_pages_into_projections(stub: KubeApiStub) -> None:
    api = client.CoreV1Api(client.ApiClient(client.Configuration(host=stub.url)))
    checked: list[str] = []

    def check(pod: Mapping[str, Any]) -> str | None:
        checked.append(pod["metadata"]["name"])
        return broker_sidecar_problem(pod, CONFIG_2K)

    namespaces = NamespaceCache(api)
    pods = PodCache(api, PodProjector(frozenset({CONFIG_2K.annotation_key}), check))
    tracemalloc.start()
    try:
        base = retained(None)
        namespaces.start()
        assert namespaces.wait_synced(60)
        after_namespaces = retained(None)
        pods.start()
        assert pods.wait_synced(120)
        after_pods = retained(None)
    finally:
        tracemalloc.stop()
        namespaces.stop()
        pods.stop()
    per_namespace = (after_namespaces - base) / NAMESPACES
    per_pod = (after_pods - after_namespaces) / INJECTED
    assert per_namespace <= 1024, f"{per_namespace:.0f} bytes per namespace"
    assert per_pod <= 2048, f"{per_pod:.0f} bytes per injected pod"
    # Ordinary pods are never listed; the injected ones came in 500-pod pages.
    assert len(pods) == INJECTED and len(namespaces) == NAMESPACES
    assert stub.requests["pods.list"] == -(-INJECTED // LIST_PAGE_SIZE)
    # Every injected pod runs the canonical sidecar; the verdict was kept, not the pod.
    held = pods.objects()
    assert all(pod.checked and pod.sidecar_problem is None for pod in held)
    assert len(checked) == INJECTED  # once per pod, as it arrived
    assert pods.get(held[0]["metadata"]["namespace"], held[0]["metadata"]["name"]).source == CACHE


def test_a_watched_change_replaces_the_projection(stub: KubeApiStub) -> None:
    api = client.CoreV1Api(client.ApiClient(client.Configuration(host=stub.url)))
    pods = PodCache(api)
    pods.start()
    try:
        assert pods.wait_synced(60)
        pod = next(p for p in stub.items("pods", "team0-ns00000") if "i" in p["metadata"]["name"][-1])  # fmt: skip
        pod["status"]["initContainerStatuses"][0]["ready"] = False
        stub.put("pods", pod)
        key = (pod["metadata"]["namespace"], pod["metadata"]["name"])

        def sidecar_ready() -> bool:
            held = pods.cached_key(key)
            assert held is not None
            return held["status"]["initContainerStatuses"][0]["ready"]

        wait_until(lambda: not sidecar_ready(), what="the MODIFIED event")
        stub.delete("pods", key[1], key[0])
        wait_until(lambda: pods.cached_key(key) is None, what="the DELETED event")
    finally:
        pods.stop()
