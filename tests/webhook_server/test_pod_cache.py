"""The injected-pod cache: only labelled pods, a GET on a miss, watch events applied."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sidecred.dev.kube_stub import KubeApiStub
from sidecred.kube.watch import CACHE, FETCHED, NOT_FOUND, UNAVAILABLE, PodCache

from .conftest import core_api, wait_until

INJECTED = {"sidecred.dev/injected": "true"}


def _pod(name: str, labels: dict[str, str], phase: str = "Running") -> dict:
    return {
        "metadata": {"name": name, "namespace": "shop", "labels": labels},
        "spec": {"containers": [{"name": "app", "image": "app"}]},
        "status": {"phase": phase},
    }


@pytest.fixture
def pods(stub: KubeApiStub) -> Iterator[PodCache]:
    stub.put("pods", _pod("web-1", INJECTED))
    stub.put("pods", _pod("plain", {}))
    cache = PodCache(core_api(stub.url), watch_timeout_seconds=5)
    cache.start()
    assert cache.wait_synced(10)
    yield cache
    cache.stop()


def test_lists_only_injected_pods(pods: PodCache, stub: KubeApiStub) -> None:
    assert [p["metadata"]["name"] for p in pods.objects()] == ["web-1"]
    assert pods.get("shop", "web-1").source == CACHE
    assert stub.requests["pods.get"] == 0


def test_watch_applies_changes_to_labelled_pods(pods: PodCache, stub: KubeApiStub) -> None:
    stub.put("pods", _pod("web-2", INJECTED))
    stub.put("pods", _pod("web-1", INJECTED, phase="Succeeded"))
    stub.put("pods", _pod("plain-2", {}))
    wait_until(lambda: pods.cached_key(("shop", "web-2")) is not None)
    wait_until(lambda: pods.get("shop", "web-1").object["status"]["phase"] == "Succeeded")
    stub.delete("pods", "web-2", "shop")
    wait_until(lambda: pods.cached_key(("shop", "web-2")) is None)
    assert pods.cached_key(("shop", "plain-2")) is None


def test_miss_reads_the_pod_and_a_missing_one_is_not_found(
    pods: PodCache, stub: KubeApiStub
) -> None:
    fetched = pods.get("shop", "plain")  # not labelled, so only a GET finds it
    assert fetched.source == FETCHED and fetched.object["metadata"]["name"] == "plain"
    gone = pods.get("shop", "nope")
    assert gone.source == NOT_FOUND and gone.error == 'pod "shop/nope" not found'
    stub.stop()
    down = pods.get("shop", "other")
    assert down.source == UNAVAILABLE and "unreachable" in down.error
