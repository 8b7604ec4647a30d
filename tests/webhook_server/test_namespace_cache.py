"""The namespace cache against the API server stub, through the real kubernetes client."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from kubernetes import client

from sidecred.dev.kube_stub import KubeApiStub
from sidecred.kube.projection import NamespaceProjection
from sidecred.kube.watch import (
    BACKOFF_MAX_SECONDS,
    CACHE,
    FETCHED,
    NOT_FOUND,
    NOT_FOUND_TTL_SECONDS,
    UNAVAILABLE,
    NamespaceCache,
    next_backoff,
)

from .conftest import POLICY, core_api, wait_until


def annotations(cache: NamespaceCache, name: str) -> dict | None:
    obj = cache.cached(name)
    return None if obj is None else obj["metadata"].get("annotations", {})


def test_list_fills_the_cache_with_projections(cache: NamespaceCache, stub: KubeApiStub) -> None:
    lookup = cache.get("shop")
    assert lookup.source == CACHE
    assert isinstance(lookup.object, NamespaceProjection)
    # Name and policy only: the labels, spec and status the stub sent are not kept.
    assert dict(lookup.object) == {"metadata": {"name": "shop", "annotations": POLICY}}
    assert stub.requests["list"] == 1
    assert stub.requests["get"] == 0


def test_watch_events_update_the_cache(cache: NamespaceCache, stub: KubeApiStub) -> None:
    stub.add_namespace("late", {"iam.amazonaws.com/allowed-roles": '["a"]'})
    wait_until(lambda: cache.cached("late") is not None, what="ADDED")
    stub.set_annotations("shop", {"iam.amazonaws.com/permitted": ".*"})
    wait_until(lambda: annotations(cache, "shop") == {"iam.amazonaws.com/permitted": ".*"})
    stub.delete_namespace("late")
    wait_until(lambda: cache.cached("late") is None, what="DELETED")
    assert stub.requests["get"] == 0
    assert stub.requests["list"] == 1


def test_miss_falls_back_to_a_get_and_caches_it(cache: NamespaceCache, stub: KubeApiStub) -> None:
    # Stop the watch so the new namespace deterministically reaches the server but
    # not the cache: the state of a namespace created a moment before its first pod.
    cache.stop()
    stub.add_namespace("fresh", POLICY)
    lookup = cache.get("fresh")
    assert lookup.source == FETCHED
    assert lookup.object is not None
    assert lookup.object["metadata"]["annotations"] == POLICY
    assert stub.requests["get"] == 1
    assert cache.get("fresh").source == CACHE
    assert stub.requests["get"] == 1


def test_unknown_namespace_is_not_found(cache: NamespaceCache, stub: KubeApiStub) -> None:
    lookup = cache.get("nowhere")
    assert lookup.object is None
    assert lookup.source == NOT_FOUND
    assert lookup.error == 'namespace "nowhere" not found'


def test_api_down_denies_unknown_but_keeps_cached(cache: NamespaceCache, stub: KubeApiStub) -> None:
    stub.stop()
    lookup = cache.get("elsewhere")
    assert lookup.object is None
    assert lookup.source == UNAVAILABLE
    assert 'namespace "elsewhere"' in lookup.error
    assert "unreachable" in lookup.error
    cached = cache.get("shop")
    assert cached.source == CACHE
    assert cached.object is not None
    assert cached.object["metadata"]["annotations"] == POLICY
    assert cache.synced


def test_watch_resumes_after_the_api_server_restarts(
    cache: NamespaceCache, stub: KubeApiStub
) -> None:
    watches_before = stub.requests["watch"]
    stub.restart()
    stub.add_namespace("after-restart", POLICY)
    wait_until(lambda: cache.cached("after-restart") is not None, timeout=30, what="resume")
    assert stub.requests["watch"] > watches_before
    # Resumed from the last resourceVersion: no relist was needed.
    assert stub.requests["list"] == 1


def test_expired_resource_version_relists(cache: NamespaceCache, stub: KubeApiStub) -> None:
    stub.stop()
    stub.add_namespace("while-away", POLICY)
    stub.compact()  # history is gone: the watch's resourceVersion now gets 410
    stub.start()
    wait_until(lambda: cache.cached("while-away") is not None, timeout=30, what="relist")
    assert stub.requests["list"] == 2


def test_bookmarks_are_accepted(cache: NamespaceCache, stub: KubeApiStub) -> None:
    stub.bookmark()
    stub.add_namespace("after-bookmark")
    wait_until(lambda: cache.cached("after-bookmark") is not None)
    assert cache.last_error == ""


def test_counts_api_calls_and_reports_them() -> None:
    api = KubeApiStub()
    api.add_namespace("shop", POLICY)
    api.start()
    calls: list[tuple[str, str]] = []
    cache = NamespaceCache(
        core_api(api.url), record_api_call=lambda verb, result: calls.append((verb, result))
    )
    try:
        cache.start()
        wait_until(lambda: cache.synced and cache.api_calls["watch"] >= 1)
        cache.get("missing")
        assert ("list", "ok") in calls
        assert ("watch", "ok") in calls
        assert ("get", "404") in calls
        assert cache.api_calls["get"] == api.requests["get"] == 1
    finally:
        cache.stop()
        api.stop()


def test_never_synced_when_the_api_is_down() -> None:
    api = KubeApiStub()
    api.start()
    api.stop()
    cache = NamespaceCache(core_api(api.url))
    cache.start()
    try:
        wait_until(lambda: cache.last_error != "", what="a failed list")
        assert not cache.synced
    finally:
        cache.stop()


@pytest.mark.parametrize("rand", [0.0, 0.5, 1.0])
def test_backoff_doubles_up_to_the_cap_with_jitter(rand: float) -> None:
    delay = 0.0
    delays = []
    for _ in range(12):
        delay = next_backoff(delay, rand=lambda: rand)
        delays.append(delay)
    assert 0.375 <= delays[0] <= 0.625
    assert delays[-1] <= BACKOFF_MAX_SECONDS * 1.25
    assert delays[-1] >= BACKOFF_MAX_SECONDS * 0.75


def test_stub_speaks_the_real_shapes(stub: KubeApiStub) -> None:
    """The typed client parses the stub's list and 404 the way it parses a real server's."""
    api = core_api(stub.url)
    listed = api.list_namespace()
    assert {ns.metadata.name for ns in listed.items} == {"shop", "default"}
    assert listed.metadata.resource_version
    with pytest.raises(client.ApiException) as exc:
        api.read_namespace("nowhere")
    assert exc.value.status == 404


def test_missing_namespace_flood_costs_one_get(cache: NamespaceCache, stub: KubeApiStub) -> None:
    """300 lookups of a namespace that does not exist, 100 of them at once: one API GET."""
    with ThreadPoolExecutor(max_workers=100) as pool:
        concurrent = list(pool.map(lambda _: cache.get("ghost"), range(100)))
    sequential = [cache.get("ghost") for _ in range(200)]
    assert all(lookup.source == NOT_FOUND for lookup in concurrent + sequential)
    assert all(lookup.error == 'namespace "ghost" not found' for lookup in sequential)
    assert stub.requests["get"] == 1


def test_missing_namespace_is_forgotten_when_created_or_after_the_ttl(stub: KubeApiStub) -> None:
    now = [1000.0]
    cache = NamespaceCache(core_api(stub.url), watch_timeout_seconds=30, clock=lambda: now[0])
    cache.start()
    try:
        wait_until(lambda: cache.synced, what="namespace cache sync")
        assert cache.get("later").source == NOT_FOUND
        stub.add_namespace("later", POLICY)
        wait_until(lambda: cache.cached("later") is not None, what="watch ADDED")
        assert cache.get("later").source == CACHE  # the watch event cleared the 404
        assert cache.get("gone").source == NOT_FOUND
        gets = stub.requests["get"]
        assert cache.get("gone").source == NOT_FOUND
        assert stub.requests["get"] == gets  # remembered
        now[0] += NOT_FOUND_TTL_SECONDS
        assert cache.get("gone").source == NOT_FOUND
        assert stub.requests["get"] == gets + 1  # expired: asked again
    finally:
        cache.stop()
