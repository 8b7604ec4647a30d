"""serving.body_budget on its own: room is shared, waited for, refused, and taken back
from bodies that stall. Plain asyncio; readers are fed through queues, so every
step happens when the test says, not after a sleep."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from sidecred.serving.body_budget import (
    BodyBudget,
    BodyEvicted,
    BudgetExhausted,
    Hold,
    read_within,
)
from tests.support.clock import Clock

MIB = 1024 * 1024


async def chunks_from(queue: asyncio.Queue[bytes | None]) -> AsyncIterator[bytes]:
    while (chunk := await queue.get()) is not None:
        yield chunk


def clocked_budget(wait_seconds: float) -> tuple[Clock, BodyBudget]:
    """A 100-byte budget on a hand-moved clock, where a body stalls after one second."""
    clock = Clock(100.0)
    return clock, BodyBudget(100, wait_seconds=wait_seconds, stalled_seconds=1.0, clock=clock)


async def cancel(task: asyncio.Task) -> None:
    """Cancel the task and see the cancellation come out of it, not swallowed."""
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def run(coroutine) -> object:
    return asyncio.run(coroutine)


def test_room_is_shared_and_given_back() -> None:
    async def scenario() -> None:
        budget = BodyBudget(100)
        first = await budget.acquire(60)
        second = await budget.acquire(40)
        assert budget.held == 100
        budget.release(first)
        budget.release(first)  # twice is once
        assert budget.held == 40
        budget.release(second)
        assert budget.held == 0

    run(scenario())


def test_a_request_waits_for_room_and_gets_it_when_given_back() -> None:
    async def scenario() -> None:
        budget = BodyBudget(100, wait_seconds=30)
        first = await budget.acquire(80)
        first.arrived = True  # being decided: never evicted
        waiting = asyncio.create_task(budget.acquire(50))
        await asyncio.sleep(0)  # let it start waiting (a scheduling step, not a delay)
        assert not waiting.done() and budget.held == 80
        budget.release(first)
        hold = await waiting
        assert hold.size == 50 and budget.held == 50

    run(scenario())


def test_no_room_within_the_wait_is_refused_and_nothing_is_held() -> None:
    async def scenario() -> None:
        budget = BodyBudget(100, wait_seconds=0.05)
        done = await budget.acquire(100)
        done.arrived = True
        with pytest.raises(BudgetExhausted, match="hold 100 of 100 bytes"):
            await budget.acquire(1)
        assert budget.held == 100
        with pytest.raises(BudgetExhausted, match="more than the budget of 100"):
            await budget.acquire(101)

    run(scenario())


def test_a_stalled_body_gives_its_room_to_a_waiting_request() -> None:
    async def scenario() -> None:
        clock, budget = clocked_budget(wait_seconds=30)
        feed: asyncio.Queue[bytes | None] = asyncio.Queue()
        held: list[Hold] = []

        async def stalled_reader() -> bytes:
            async with budget.hold(90) as hold:
                held.append(hold)
                return await read_within(hold, chunks_from(feed))

        reader = asyncio.create_task(stalled_reader())
        await feed.put(b"x" * 50)  # part of the body, then nothing more
        while not held:
            await asyncio.sleep(0)
        clock.now += 1.0  # the body has been arriving for STALLED_SECONDS
        hold = await budget.acquire(20)
        assert hold.size == 20
        with pytest.raises(BodyEvicted):
            await reader
        assert held[0].evicted and budget.evictions == 1
        assert budget.held == 20

    run(scenario())


def test_a_young_or_complete_body_is_never_evicted() -> None:
    async def scenario() -> None:
        _, budget = clocked_budget(wait_seconds=0.05)
        young = await budget.acquire(50)
        complete = await budget.acquire(50)
        complete.since -= 10
        complete.arrived = True
        with pytest.raises(BudgetExhausted):
            await budget.acquire(10)
        assert not young.evicted and not complete.evicted and budget.held == 100

    run(scenario())


def test_read_within_marks_the_body_arrived() -> None:
    async def scenario() -> None:
        budget = BodyBudget(100)
        feed: asyncio.Queue[bytes | None] = asyncio.Queue()
        for chunk in (b"ab", b"cd", None):
            await feed.put(chunk)
        async with budget.hold(4) as hold:
            assert await read_within(hold, chunks_from(feed)) == b"abcd"
            assert hold.arrived
        assert budget.held == 0

    run(scenario())


def test_a_cancel_that_is_not_an_eviction_is_not_swallowed() -> None:
    async def scenario() -> None:
        budget = BodyBudget(100)
        feed: asyncio.Queue[bytes | None] = asyncio.Queue()

        async def reader() -> bytes:
            async with budget.hold(10) as hold:
                return await read_within(hold, chunks_from(feed))

        task = asyncio.create_task(reader())
        await asyncio.sleep(0)
        await cancel(task)  # a server shutting down, say
        assert budget.held == 0

    run(scenario())


def test_the_smallest_waiting_request_gets_room_first() -> None:
    """A large body that has waited longer does not take the room an ordinary review needs."""

    async def scenario() -> None:
        clock, budget = clocked_budget(wait_seconds=30)
        stalled = await budget.acquire(95)  # its body never arrives
        stalled.task = None  # no reader to wake in this test
        other = await budget.acquire(5)
        other.arrived = True
        large = asyncio.create_task(budget.acquire(96))
        await asyncio.sleep(0)
        small = asyncio.create_task(budget.acquire(5))
        await asyncio.sleep(0)
        clock.now += 1.0
        budget.release(other)  # room for one of them: the small one gets it
        assert (await small).size == 5
        # The large one still cannot fit beside it, stalled body evicted or not.
        assert stalled.evicted and not large.done()
        assert budget.held == 5
        await cancel(large)
        assert budget.held == 5

    run(scenario())


def test_large_bodies_leave_room_for_small_ones() -> None:
    async def scenario() -> None:
        budget = BodyBudget(16 * MIB, wait_seconds=0.05)
        assert budget.large_limit == 15 * MIB
        large = [await budget.acquire(3 * MIB) for _ in range(5)]
        with pytest.raises(BudgetExhausted):
            await budget.acquire(3 * MIB)  # 15 MiB of large bodies is their share
        small = [await budget.acquire(64 * 1024) for _ in range(16)]  # the last MiB is theirs
        assert budget.held == 16 * MIB
        with pytest.raises(BudgetExhausted):
            await budget.acquire(1)
        for hold in large + small:
            budget.release(hold)
        assert budget.held == 0

    run(scenario())
