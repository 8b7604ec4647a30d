"""What a cache miss may cost: a rate budget for API reads of objects the cache does not
hold, and a bounded memory of names the API server said do not exist.

A name the watch has not delivered is read from the API server once, because an
object created a moment before it is first asked about may not have reached the
watch yet. Any caller can name objects that do not exist, so those reads share
one token bucket (`MissBudget`): past it a lookup is answered "not known yet,
retry" without an API call. Names found missing are remembered for a while
(`RecentMisses`), bounded in count and in bytes, so repeating one costs nothing.

Neither class locks: the cache calls them under its own lock. The clock is
injected so the tests need no sleeping.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Hashable

# Reads of unknown objects: about this many per second, with this burst.
MISS_READS_PER_SECOND = 10.0
MISS_READ_BURST = 20
# Names found missing: remembered this long, at most this many, at most these bytes.
NOT_FOUND_TTL_SECONDS = 10.0
NOT_FOUND_MAX_ENTRIES = 4096
NOT_FOUND_MAX_BYTES = 1024 * 1024
# What one remembered key costs besides its text (the tuple, the float, the dict slot).
ENTRY_OVERHEAD_BYTES = 200


class MissBudget:
    """A token bucket: `rate` reads per second, up to `burst` at once."""

    def __init__(
        self,
        rate: float = MISS_READS_PER_SECOND,
        burst: int = MISS_READ_BURST,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a miss budget needs a positive rate and a burst of at least 1")
        self.rate, self.burst = rate, burst
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock()

    def try_spend(self) -> bool:
        """Take one read from the budget; False when it is spent (the caller makes no call)."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


def key_bytes(key: Hashable) -> int:
    """What remembering `key` costs, for a key of strings such as (namespace, name)."""
    parts = key if isinstance(key, tuple) else (key,)
    return ENTRY_OVERHEAD_BYTES + sum(len(str(part)) for part in parts)


class RecentMisses:
    """Keys found missing, each for `ttl` seconds; the oldest go first past either bound."""

    def __init__(
        self,
        ttl: float = NOT_FOUND_TTL_SECONDS,
        max_entries: int = NOT_FOUND_MAX_ENTRIES,
        max_bytes: int = NOT_FOUND_MAX_BYTES,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl, self.max_entries, self.max_bytes = ttl, max_entries, max_bytes
        self._clock = clock
        self._when: collections.OrderedDict[Hashable, float] = collections.OrderedDict()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._when)

    def recent(self, key: Hashable) -> bool:
        """Whether `key` was found missing within the last `ttl` seconds."""
        when = self._when.get(key)
        if when is None:
            return False
        if self._clock() - when < self.ttl:
            return True
        self.discard(key)
        return False

    def add(self, key: Hashable) -> None:
        self.discard(key)
        self._when[key] = self._clock()
        self.bytes += key_bytes(key)
        while len(self._when) > self.max_entries or self.bytes > self.max_bytes:
            oldest, _ = self._when.popitem(last=False)
            self.bytes -= key_bytes(oldest)

    def clear(self) -> None:
        self._when.clear()
        self.bytes = 0

    def discard(self, key: Hashable) -> None:
        """Forget `key` (the watch has just delivered it, or its time is up)."""
        if self._when.pop(key, None) is not None:
            self.bytes -= key_bytes(key)
