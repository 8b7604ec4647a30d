"""One memory budget for the request bodies every connection holds at once.

Per connection a body is capped (3 MiB for an AdmissionReview), but 80 connections
that each announce 3 MiB, send most of it and stall held 240 MB between them. So
before a request's body is read, its declared length is taken from a budget shared
by all connections; it is given back when the answer has been built. A request
that finds no room waits up to WAIT_SECONDS for some, then is answered 503 without
its body ever being read (the server stops reading that connection, so it holds
no more than its transport's small buffer).

Waiting alone would let stalled bodies lock everyone out until their deadline
closes them. The API server sends a review in one piece, so a body still arriving
STALLED_SECONDS after it was given room is the first to go when a waiting request
needs room: its reader is told (`Hold.evicted`) and answered 503, and its room
passes on. Waiting requests get room smallest first, so an ordinary review (a few
KiB) goes before every larger body waiting with it, and bodies over
SMALL_BODY_BYTES leave RESERVED_FRACTION of the budget to the small ones. A caller
can thus slow its own bodies down, not an ordinary review: that finds room at once
unless small stalled bodies fill the whole budget, and then waits about
STALLED_SECONDS.

Runs on the server's event loop; not thread safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import mmap
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

DEFAULT_BUDGET_MIB = 48
WAIT_SECONDS = 1.5  # longest a request waits for room before it is answered 503
STALLED_SECONDS = 1.0  # a body still arriving after this may give its room to another
# Bodies up to this size (every ordinary review) may use the whole budget; larger ones
# leave RESERVED_FRACTION of it to them, so large stalled bodies alone never make an
# ordinary review wait.
SMALL_BODY_BYTES = 64 * 1024
RESERVED_FRACTION = 1 / 16


class BudgetExhausted(Exception):
    """No room for this body within WAIT_SECONDS."""


class BodyEvicted(Exception):
    """This body was too slow, and its room went to another request."""


@dataclass(eq=False)
class Hold:
    """Room for one body: `size` bytes, taken at `since`."""

    size: int
    since: float
    task: asyncio.Task[object] | None = None
    arrived: bool = False  # the whole body is in: no longer evictable
    evicted: bool = False
    released: bool = field(default=False, repr=False)


@dataclass(eq=False)
class _Waiter:
    size: int
    task: asyncio.Task[object] | None
    granted: asyncio.Future[Hold]


class BodyBudget:
    """Bytes of request bodies held at once across all connections, up to `limit`.

    Waiting requests are given room smallest first, so an ordinary review (a few KiB)
    goes before any large body that waits with it, and a stalled body is evicted only
    when that makes room for someone.
    """

    def __init__(
        self,
        limit: int,
        *,
        wait_seconds: float = WAIT_SECONDS,
        stalled_seconds: float = STALLED_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`clock` dates the holds (how long a body has been arriving); the wait for
        room is timed by the event loop."""
        self.limit = limit
        self.large_limit = limit - int(limit * RESERVED_FRACTION)
        self.wait_seconds = wait_seconds
        self.stalled_seconds = stalled_seconds
        self._clock = clock
        self._holds: dict[Hold, None] = {}  # in the order they were given room
        self._waiters: list[_Waiter] = []
        self._recheck: asyncio.TimerHandle | None = None
        self.held = 0
        self.evictions = 0

    def _room(self, size: int) -> int:
        return self.limit if size <= SMALL_BODY_BYTES else self.large_limit

    def _fits(self, size: int) -> bool:
        return self.held + size <= self._room(size)

    def _stalled(self, now: float) -> Hold | None:
        """The oldest hold whose body is still arriving after `stalled_seconds`."""
        for hold in self._holds:
            if not hold.arrived and now - hold.since >= self.stalled_seconds:
                return hold
            if now - hold.since < self.stalled_seconds:
                return None  # the rest are younger
        return None

    def _give(self, size: int, task: asyncio.Task[object] | None) -> Hold:
        hold = Hold(size, self._clock(), task)
        self._holds[hold] = None
        self.held += size
        return hold

    def _give_back(self, hold: Hold) -> None:
        if not hold.released:
            hold.released = True
            self._holds.pop(hold, None)
            self.held -= hold.size

    def _evict(self, hold: Hold) -> None:
        hold.evicted = True
        self.evictions += 1
        self._give_back(hold)
        if hold.task is not None:
            hold.task.cancel()  # wakes its reader, which answers BodyEvicted

    def _serve(self) -> None:
        """Give room to waiters, smallest first, evicting stalled bodies for them; when
        some must still wait, look again once the oldest arriving body may be evicted."""
        self._recheck = None
        while self._waiters:
            fitting = [w for w in self._waiters if self._fits(w.size)]
            if fitting:
                waiter = min(fitting, key=lambda w: w.size)
                self._waiters.remove(waiter)
                waiter.granted.set_result(self._give(waiter.size, waiter.task))
                continue
            victim = self._stalled(self._clock())
            if victim is None:
                break
            self._evict(victim)
        arriving = [h.since for h in self._holds if not h.arrived]
        if self._waiters and arriving:
            age = self._clock() - min(arriving)
            delay = max(0.0, self.stalled_seconds - age) + 0.01
            self._recheck = asyncio.get_running_loop().call_later(delay, self._serve)

    def _expire(self, waiter: _Waiter) -> None:
        if waiter in self._waiters:
            self._waiters.remove(waiter)
            waiter.granted.set_exception(
                BudgetExhausted(f"request bodies already hold {self.held} of {self.limit} bytes")
            )

    async def acquire(self, size: int) -> Hold:
        """Room for `size` bytes; BudgetExhausted if none within `wait_seconds`."""
        if size > self._room(size):
            raise BudgetExhausted(f"{size} bytes is more than the budget of {self._room(size)}")
        task = asyncio.current_task()
        if not self._waiters and self._fits(size):
            return self._give(size, task)
        loop = asyncio.get_running_loop()
        waiter = _Waiter(size, task, loop.create_future())
        self._waiters.append(waiter)
        expiry = loop.call_later(self.wait_seconds, self._expire, waiter)
        if self._recheck is not None:
            self._recheck.cancel()
        self._serve()
        try:
            return await asyncio.shield(waiter.granted)
        except asyncio.CancelledError:
            # Cancelled while waiting (the server shutting down): give back what came.
            if waiter in self._waiters:
                self._waiters.remove(waiter)
            elif waiter.granted.done() and not waiter.granted.exception():
                self.release(waiter.granted.result())
            raise
        finally:
            expiry.cancel()

    def release(self, hold: Hold) -> None:
        self._give_back(hold)
        if self._waiters:
            if self._recheck is not None:
                self._recheck.cancel()
            self._serve()

    @contextlib.asynccontextmanager
    async def hold(self, size: int) -> AsyncIterator[Hold]:
        held = await self.acquire(size)
        try:
            yield held
        finally:
            self.release(held)


async def read_within(hold: Hold, chunks: AsyncIterator[bytes]) -> bytes:
    """The body from `chunks`, read within `hold`; BodyEvicted if the budget took it back.

    While it arrives the body is kept in an anonymous memory map of the declared size:
    only the pages written take memory, and all of it goes back to the system the
    moment the body is done with or evicted. Bodies in many heap chunks left the
    allocator's heap fragmented after a siege, the process larger than its budget.
    """
    buffer = mmap.mmap(-1, max(hold.size, 1))
    try:
        try:
            async for chunk in chunks:
                buffer.write(chunk)  # h11 never delivers more than Content-Length
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if not hold.evicted or task is None:
                raise
            task.uncancel()
            raise BodyEvicted("the body was still arriving and its room went to another") from None
        hold.arrived = True
        return buffer[: buffer.tell()]
    finally:
        buffer.close()
