"""What cache misses may cost: the read budget and the memory of missing names, alone
(with a hand-turned clock) and inside the namespace cache against the API server stub."""

from __future__ import annotations

import pytest

from sidecred.dev.kube_stub import KubeApiStub
from sidecred.kube import watch as kube
from sidecred.kube.miss_budget import (
    ENTRY_OVERHEAD_BYTES,
    MISS_READ_BURST,
    MISS_READS_PER_SECOND,
    MissBudget,
    RecentMisses,
)
from sidecred.kube.watch import NOT_FOUND, THROTTLED, NamespaceCache

from .conftest import core_api, wait_until


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_budget_allows_its_burst_then_its_rate() -> None:
    clock = Clock()
    budget = MissBudget(rate=10, burst=20, clock=clock)
    assert sum(budget.try_spend() for _ in range(100)) == 20
    clock.now += 0.5
    assert sum(budget.try_spend() for _ in range(100)) == 5
    clock.now += 60  # refills up to the burst, never beyond
    assert sum(budget.try_spend() for _ in range(100)) == 20


@pytest.mark.parametrize(("rate", "burst"), [(0, 5), (-1, 5), (10, 0)])
def test_a_budget_that_allows_nothing_is_refused(rate: float, burst: int) -> None:
    with pytest.raises(ValueError, match="positive rate"):
        MissBudget(rate, burst)


def test_recent_misses_expire_and_are_bounded_in_count() -> None:
    clock = Clock()
    misses = RecentMisses(ttl=10, max_entries=3, max_bytes=10**6, clock=clock)
    for name in ("a1", "a2", "a3", "a4"):
        misses.add(("", name))
    assert not misses.recent(("", "a1"))  # the oldest went first
    assert all(misses.recent(("", n)) for n in ("a2", "a3", "a4"))
    clock.now += 10
    assert not misses.recent(("", "a2"))
    assert len(misses) == 2


def test_recent_misses_are_bounded_in_bytes() -> None:
    misses = RecentMisses(ttl=10, max_entries=10**6, max_bytes=10 * (ENTRY_OVERHEAD_BYTES + 63))
    for index in range(100):
        misses.add(("", f"{index:063d}"))
    assert len(misses) == 10
    assert misses.bytes == 10 * (ENTRY_OVERHEAD_BYTES + 63)
    misses.discard(("", f"{99:063d}"))
    assert len(misses) == 9 and misses.bytes == 9 * (ENTRY_OVERHEAD_BYTES + 63)


@pytest.fixture
def frozen(stub: KubeApiStub) -> tuple[NamespaceCache, Clock]:
    clock = Clock()
    cache = NamespaceCache(core_api(stub.url), watch_timeout_seconds=30, clock=clock)
    cache.start()
    wait_until(lambda: cache.synced, what="namespace cache sync")
    yield cache, clock
    cache.stop()


def test_a_flood_of_unknown_namespaces_costs_the_burst_then_the_rate(
    frozen: tuple[NamespaceCache, Clock], stub: KubeApiStub
) -> None:
    """600 distinct names that do not exist: GETs stop at the burst, and resume at the rate."""
    cache, clock = frozen
    lookups = [cache.get(f"ghost-{index}") for index in range(600)]
    assert stub.requests["get"] == MISS_READ_BURST
    assert {lookup.source for lookup in lookups} == {NOT_FOUND, THROTTLED}
    throttled = [lookup for lookup in lookups if lookup.source == THROTTLED]
    assert len(throttled) == 600 - MISS_READ_BURST
    assert throttled[0].object is None
    assert throttled[0].error == f'namespace "ghost-{MISS_READ_BURST}" is not known yet; retry'
    clock.now += 1.0
    for index in range(600, 700):
        cache.get(f"ghost-{index}")
    assert stub.requests["get"] == MISS_READ_BURST + MISS_READS_PER_SECOND
    # Known namespaces never touch the budget, spent as it is.
    assert cache.get("shop").object is not None
    # A remembered miss costs nothing either.
    assert cache.get("ghost-0").source == NOT_FOUND
    assert stub.requests["get"] == MISS_READ_BURST + MISS_READS_PER_SECOND


def test_a_namespace_created_during_a_flood_is_found_once_the_watch_has_it(
    frozen: tuple[NamespaceCache, Clock], stub: KubeApiStub
) -> None:
    cache, _ = frozen
    for index in range(MISS_READ_BURST):
        cache.get(f"ghost-{index}")
    assert cache.get("fresh").source == THROTTLED  # not yet created, and the budget is spent
    stub.add_namespace("fresh")
    wait_until(lambda: cache.get("fresh").object is not None, what="watch ADDED")


def test_missing_namespaces_are_bounded(stub: KubeApiStub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kube, "NOT_FOUND_MAX_ENTRIES", 3)
    cache = NamespaceCache(core_api(stub.url), watch_timeout_seconds=30)
    for name in ("a1", "a2", "a3", "a4"):
        assert cache.get(name).source == NOT_FOUND
    assert stub.requests["get"] == 4
    assert cache.get("a4").source == NOT_FOUND and stub.requests["get"] == 4
    assert cache.get("a1").source == NOT_FOUND and stub.requests["get"] == 5  # oldest dropped
