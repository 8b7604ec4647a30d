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


@pytest.fixture
def removed(stub: KubeApiStub) -> Iterator[tuple[PodCache, list[tuple[str, str]]]]:
    """A pod cache that reports what leaves it: (pod name, uid) per removal."""
    seen: list[tuple[str, str]] = []
    stub.put("pods", _pod("web-1", INJECTED))
    cache = PodCache(
        core_api(stub.url),
        watch_timeout_seconds=5,
        on_removed=lambda key, uid: seen.append((key[1], uid)),
    )
    cache.start()
    assert cache.wait_synced(10)
    yield cache, seen
    cache.stop()


def test_a_get_never_caches_a_pod_outside_the_selector(pods: PodCache, stub: KubeApiStub) -> None:
    """The watch would never report its deletion, so it would be served for good."""
    assert pods.get("shop", "plain").source == FETCHED
    assert pods.cached("shop", "plain") is None
    assert pods.get("shop", "plain").source == FETCHED  # read again: still not cached
    assert stub.requests["pods.get"] == 2
    stub.delete("pods", "plain", "shop")
    assert pods.get("shop", "plain").source == NOT_FOUND


def test_a_get_caches_a_labelled_pod_the_watch_has_not_delivered(
    pods: PodCache, stub: KubeApiStub
) -> None:
    """A labelled pod is cached by a GET: its deletion will come through the watch."""
    pods.stop()  # no more watch events: only the GET can bring web-3 in
    stub.put("pods", _pod("web-3", INJECTED))
    assert pods.get("shop", "web-3").source == FETCHED
    assert pods.cached("shop", "web-3") is not None


def test_deleted_and_unlabelled_pods_are_reported_removed_with_their_uid(
    removed: tuple[PodCache, list[tuple[str, str]]], stub: KubeApiStub
) -> None:
    cache, seen = removed
    first = stub.get("pods", "web-1", "shop")
    stub.put("pods", _pod("web-1", {"other": "x"}))  # the label removed: out of the selector
    wait_until(lambda: cache.cached("shop", "web-1") is None, what="web-1 out of the cache")
    assert seen == [("web-1", first["metadata"]["uid"])]
    second = stub.put("pods", _pod("web-2", INJECTED))
    wait_until(lambda: cache.cached("shop", "web-2") is not None)
    stub.delete("pods", "web-2", "shop")
    wait_until(lambda: len(seen) == 2, what="web-2's deletion")
    assert seen[1] == ("web-2", second["metadata"]["uid"])


def test_a_relist_reports_pods_deleted_while_the_watch_was_away(
    removed: tuple[PodCache, list[tuple[str, str]]], stub: KubeApiStub
) -> None:
    cache, seen = removed
    old = stub.get("pods", "web-1", "shop")
    stub.stop()
    stub.delete("pods", "web-1", "shop")
    new = stub.put("pods", _pod("web-1", INJECTED))  # the same name, a new pod
    stub.compact()  # the watch's resourceVersion now gets 410: the cache relists
    stub.start()
    wait_until(
        lambda: (
            (cache.cached("shop", "web-1") or {}).get("metadata", {}).get("uid")
            == new["metadata"]["uid"]
        ),
        timeout=30,
        what="relist",
    )
    assert seen == [("web-1", old["metadata"]["uid"])]


def test_a_cache_stopped_with_forget_reports_every_pod_it_held(
    removed: tuple[PodCache, list[tuple[str, str]]], stub: KubeApiStub
) -> None:
    cache, seen = removed
    pod = stub.get("pods", "web-1", "shop")
    cache.stop(forget=True)
    assert cache.objects() == [] and not cache.synced
    assert seen == [("web-1", pod["metadata"]["uid"])]
