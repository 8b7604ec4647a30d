"""Listing in pages: the cache lists `limit` objects at a time, lists again from the start
when the list expires between pages (410), and answers from what it holds during a relist."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client

from sidecred.dev.kube_stub import KubeApiStub
from sidecred.dev.processes import wait_until
from sidecred.kube.projection import project_namespace
from sidecred.kube.watch import CACHE, PodCache, WatchCache

POLICY = {"iam.amazonaws.com/permitted": ".*"}


def core_api(stub: KubeApiStub) -> client.CoreV1Api:
    return client.CoreV1Api(client.ApiClient(client.Configuration(host=stub.url)))


class PausingList:
    """`list_namespace` that can hold the cache after a given LIST page until released."""

    def __init__(self, api: client.CoreV1Api, after_page: int | None = None) -> None:
        self._list = api.list_namespace
        self.after_page = after_page
        self.pages = 0
        self.paused = threading.Event()
        self.release = threading.Event()
        self.on_page: Callable[[int], None] = lambda page: None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        response = self._list(*args, **kwargs)
        if kwargs.get("watch"):
            return response
        self.pages += 1
        self.on_page(self.pages)
        if self.pages == self.after_page:
            self.paused.set()
            assert self.release.wait(30), "the test never released the list"
        return response


def namespace_cache(api: client.CoreV1Api, lister: PausingList) -> WatchCache:
    def read(key: tuple[str, str], **kwargs: object) -> object:
        return api.read_namespace(key[1], **kwargs)

    return WatchCache("namespace", lister, read, project_namespace, page_size=10)


@pytest.fixture
def stub() -> Iterator[KubeApiStub]:
    with KubeApiStub() as api:
        for index in range(25):
            api.add_namespace(f"ns-{index:02d}", POLICY)
        yield api


def test_the_list_is_read_page_by_page(stub: KubeApiStub) -> None:
    lister = PausingList(core_api(stub))
    cache = namespace_cache(core_api(stub), lister)
    cache.start()
    try:
        assert cache.wait_synced(10)
        assert len(cache) == 25
        assert stub.requests["list"] == 3  # 10 + 10 + 5
        assert cache.lookup(("", "ns-24")).source == CACHE
    finally:
        cache.stop()


def test_a_list_that_expires_between_pages_is_listed_again_from_the_start(
    stub: KubeApiStub,
) -> None:
    lister = PausingList(core_api(stub))

    def expire_once(page: int) -> None:
        if page == 1:  # between the first and second page: history compacted, one deleted
            stub.delete_namespace("ns-20")
            stub.compact()

    lister.on_page = expire_once
    cache = namespace_cache(core_api(stub), lister)
    cache.start()
    try:
        assert cache.wait_synced(10)
        # Page 1, then page 2's continue token got 410, then three pages anew.
        assert stub.requests["list"] == 5
        assert len(cache) == 24 and cache.cached_key(("", "ns-20")) is None
    finally:
        cache.stop()


def test_progress_says_how_far_the_first_list_has_got(stub: KubeApiStub) -> None:
    lister = PausingList(core_api(stub), after_page=2)
    cache = namespace_cache(core_api(stub), lister)
    cache.start()
    try:
        assert lister.paused.wait(10)
        wait_until(lambda: cache.listed == 10, what="the first page loaded")
        assert not cache.synced
        assert cache.progress == "listing (10 namespaces so far)"
        lister.release.set()
        assert cache.wait_synced(10)
    finally:
        lister.release.set()
        cache.stop()


def test_a_relist_answers_from_what_it_holds_and_drops_what_is_gone(stub: KubeApiStub) -> None:
    lister = PausingList(core_api(stub), after_page=5)  # the relist's second page
    cache = namespace_cache(core_api(stub), lister)
    cache.start()
    try:
        assert cache.wait_synced(10)
        wait_until(lambda: cache.api_calls["watch"] >= 1, what="the watch")
        stub.stop()  # the watch breaks, and history is gone when the server is back
        stub.delete_namespace("ns-24")
        stub.compact()
        stub.start()
        assert lister.paused.wait(20), "no relist"
        # Mid-relist: everything is answered from the cache, ns-24 included (its
        # deletion is known only when the list completes).
        for index in range(25):
            assert cache.lookup(("", f"ns-{index:02d}")).source == CACHE
        assert stub.requests["get"] == 0
        lister.release.set()
        wait_until(lambda: cache.cached_key(("", "ns-24")) is None, what="the relist's end")
        assert len(cache) == 24 and cache.synced
    finally:
        lister.release.set()
        cache.stop()


def _pod(name: str) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": "shop",
            "labels": {"sidecred.dev/injected": "true"},
        },
        "spec": {"containers": [{"name": "app", "image": "app"}]},
    }


def test_a_paged_relist_reports_what_left_the_cache(stub: KubeApiStub) -> None:
    """Deleted while unwatched, or replaced by another pod of the same name: both are told
    to on_removed with the uid the cache held, once the relist has seen every page."""
    for index in range(12):
        stub.put("pods", _pod(f"web-{index:02d}"))
    removed: list[tuple[tuple[str, str], str]] = []
    pods = PodCache(
        core_api(stub), page_size=5, on_removed=lambda key, uid: removed.append((key, uid))
    )
    pods.start()
    try:
        assert pods.wait_synced(10)
        wait_until(lambda: pods.api_calls["watch"] >= 1, what="the watch")
        gone_uid = stub.get("pods", "web-03", "shop")["metadata"]["uid"]
        old_uid = stub.get("pods", "web-07", "shop")["metadata"]["uid"]
        stub.stop()
        stub.delete("pods", "web-03", "shop")
        stub.delete("pods", "web-07", "shop")
        stub.put("pods", _pod("web-07"))  # the same name, a new uid
        stub.compact()
        stub.start()
        wait_until(lambda: len(removed) == 2, timeout=20, what="the relist's removals")
        assert sorted(removed) == sorted(
            [(("shop", "web-03"), gone_uid), (("shop", "web-07"), old_uid)]
        )
        new_uid = stub.get("pods", "web-07", "shop")["metadata"]["uid"]
        assert pods.get("shop", "web-07").object["metadata"]["uid"] == new_uid
        assert pods.cached_key(("shop", "web-03")) is None and len(pods) == 11
    finally:
        pods.stop()
