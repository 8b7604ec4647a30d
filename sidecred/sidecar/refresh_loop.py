"""The refresh loop: fetch, store, wait until the schedule says so, retry failures.

Decide, then act: when to call the source is the pure schedule's answer
(`schedule.py`), what is served is the cache's state (`cache.py`); this loop
only calls the source and records the outcome. The request path never waits
on it.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from sidecred.sidecar import log
from sidecred.sidecar.cache import CredentialCache
from sidecred.sidecar.credentials import Credentials, SourceError
from sidecred.sidecar.wire import format_expiration

# Wake at least this often while waiting, so a wall-clock jump (suspend,
# NTP step) is noticed instead of sleeping past the refresh time.
MAX_WAIT_SECONDS = 60.0


class CredentialSource(Protocol):
    role_arn: str
    session_name: str

    async def fetch(self) -> Credentials: ...


async def refresh_once(cache: CredentialCache, source: CredentialSource) -> bool:
    """One call to the source; True on success. Never raises for source failures."""
    issued_at = cache.clock()
    cache.sts_calls += 1
    try:
        creds = await source.fetch()
    except SourceError as exc:
        retry_at = cache.record_failure(exc)
        held = cache.held
        log.error(
            "sts_failed",
            role_arn=source.role_arn,
            session_name=source.session_name,
            code=exc.code,
            error=exc.message,
            refused=exc.refused,
            attempt=cache.failures_in_row,
            retry_in=round(cache.retry_delay_seconds, 3),
            retry_at=format_expiration(retry_at),
            serving_until=format_expiration(held.expiration) if held else None,
        )
        return False
    next_at = cache.store(creds, issued_at)
    log.info(
        "credentials_refreshed",
        role_arn=creds.role_arn,
        session_name=source.session_name,
        account_id=creds.account_id,
        expiration=format_expiration(creds.expiration),
        next_refresh=format_expiration(next_at),
    )
    return True


async def run_refresh_loop(
    cache: CredentialCache, source: CredentialSource, stop: asyncio.Event
) -> None:
    """Fetch now, then refresh on schedule until `stop` is set."""
    while not stop.is_set():
        due = cache.next_refresh
        now = cache.clock()
        if due is None or now >= due:
            await refresh_once(cache, source)
            continue
        wait = min((due - now).total_seconds(), MAX_WAIT_SECONDS)
        try:
            await asyncio.wait_for(stop.wait(), timeout=max(wait, 0.0))
        except TimeoutError:
            pass
