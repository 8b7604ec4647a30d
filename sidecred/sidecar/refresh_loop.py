"""The refresh loop: fetch, store, wait until the schedule says so, retry failures.

Decide, then act: when to call the source is the pure schedule's answer
(`schedule.py`), what is served is the cache's state (`cache.py`); this module
only calls the source and records the outcome. The request path never waits
on it. Each role has its own `Refresher`: its own cache, schedule and jitter.
"""

from __future__ import annotations

from sidecred.sidecar import log
from sidecred.sidecar.cache import CredentialCache
from sidecred.sidecar.credentials import Credentials, SourceError
from sidecred.sidecar.wire import format_expiration

TYPE_CHECKING = False  # `typing` is not imported: the serving process would pay ~2 MB for it
if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime
    from typing import Protocol

    from sidecred.sidecar.fetch_process import FetchProcess, _Run
    from sidecred.sidecar.reactor import Reactor, Timer

    class CredentialSource(Protocol):
        role_arn: str
        session_name: str

        async def fetch(self) -> Credentials: ...


# Wake at least this often while waiting, so a wall-clock jump (suspend,
# NTP step) is noticed instead of sleeping past the refresh time.
MAX_WAIT_SECONDS = 60.0
# `sidecred fetch` children alive at once, across every role of the pod: the
# process tree's memory stays bounded however many containers have a role.
MAX_CONCURRENT_FETCHES = 2


def record_failure(cache: CredentialCache, source_fields: dict[str, str], exc: SourceError) -> None:
    retry_at = cache.record_failure(exc)
    held = cache.held
    log.error(
        "sts_failed",
        **source_fields,
        code=exc.code,
        error=exc.message,
        refused=exc.refused,
        attempt=cache.failures_in_row,
        retry_in=round(cache.retry_delay_seconds, 3),
        retry_at=format_expiration(retry_at),
        serving_until=format_expiration(held.expiration) if held else None,
    )


def record_success(
    cache: CredentialCache, source_fields: dict[str, str], creds: Credentials, issued_at: datetime
) -> None:
    next_at = cache.store(creds, issued_at)
    log.info(
        "credentials_refreshed",
        **source_fields,
        account_id=creds.account_id,
        expiration=format_expiration(creds.expiration),
        next_refresh=format_expiration(next_at),
    )


async def refresh_once(cache: CredentialCache, source: CredentialSource) -> bool:
    """One call to an awaitable source; True on success. Never raises for source failures.

    For simulations and tests that drive a cache with a source of their own.
    """
    issued_at = cache.clock()
    cache.fetches += 1
    fields = {"role_arn": source.role_arn, "session_name": source.session_name}
    try:
        creds = await source.fetch()
    except SourceError as exc:
        record_failure(cache, fields, exc)
        return False
    record_success(cache, fields, creds, issued_at)
    return True


class FetchGate:
    """At most `limit` fetches at once; the others wait their turn, in order."""

    def __init__(self, limit: int = MAX_CONCURRENT_FETCHES) -> None:
        self.limit = limit
        self.running = 0
        self.waiting: list[Callable[[], None]] = []

    def enter(self, start: Callable[[], None]) -> None:
        """Call `start` now if a place is free, else when one is; `leave()` after each."""
        if self.running < self.limit:
            self.running += 1
            start()
        else:
            self.waiting.append(start)

    def leave(self) -> None:
        if self.waiting:
            self.waiting.pop(0)()  # the place passes straight on
        else:
            self.running -= 1


class Refresher:
    """One role's schedule on the serving loop: fetch now, then whenever the cache says."""

    def __init__(
        self,
        reactor: Reactor,
        cache: CredentialCache,
        source: FetchProcess,
        log_fields: dict[str, str],
        gate: FetchGate | None = None,
    ) -> None:
        self.reactor = reactor
        self.cache = cache
        self.source = source
        self.fields = {"role_arn": source.role_arn, "session_name": source.session_name}
        self.fields.update(log_fields)
        self.gate = gate or FetchGate()
        self.running: _Run | None = None
        self.queued = False  # waiting at the gate
        self.timer: Timer | None = None
        self.stopped = False

    def start(self) -> None:
        self._tick()

    def stop(self) -> None:
        self.stopped = True
        if self.timer is not None:
            self.timer.cancel()
        if self.running is not None:
            self.running.kill()
            self.running = None
            self.gate.leave()

    def _tick(self) -> None:
        self.timer = None
        if self.stopped or self.running is not None or self.queued:
            return
        due = self.cache.next_refresh
        now = self.cache.clock()
        if due is None or now >= due:
            self.queued = True
            self.gate.enter(self._fetch)
            return
        wait = min((due - now).total_seconds(), MAX_WAIT_SECONDS)
        self.timer = self.reactor.call_later(max(wait, 0.0), self._tick)

    def _fetch(self) -> None:
        self.queued = False
        if self.stopped:
            self.gate.leave()
            return
        issued_at = self.cache.clock()
        self.cache.fetches += 1

        def done(result: Credentials | SourceError) -> None:
            self.running = None
            self.gate.leave()
            if self.stopped:
                return
            if isinstance(result, SourceError):
                record_failure(self.cache, self.fields, result)
            else:
                record_success(self.cache, self.fields, result, issued_at)
            self.timer = self.reactor.call_later(0.0, self._tick)

        run = self.source.start(self.reactor, done)
        if run.done is not None:  # still running (a spawn failure has answered already)
            self.running = run
