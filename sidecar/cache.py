"""The refreshing credential cache: decide (pure schedule), then act (STS in a thread).

The request path only reads `CredentialCache.lookup`, a couple of attribute
reads on pre-serialised bytes; it never waits on STS. One background task
fetches, schedules the next refresh and retries failures with backoff.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sidecred.sidecar import log
from sidecred.sidecar.refresh import (
    DEFAULT_POLICY,
    RefreshPolicy,
    is_expired,
    next_refresh_at,
    retry_delay,
)
from sidecred.sidecar.sources import Credentials, CredentialSource, StsError

T = TypeVar("T")

# Wake at least this often while waiting, so a wall-clock jump (suspend,
# NTP step) is noticed instead of sleeping past the refresh time.
_MAX_WAIT_SECONDS = 60.0


def format_expiration(moment: datetime) -> str:
    """RFC 3339 in UTC with a `Z` suffix (JS v3 and Rust reject offsets)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def credentials_body(creds: Credentials) -> bytes:
    """The /v1/credentials 200 body, serialised once per refresh."""
    return json.dumps(
        {
            "AccessKeyId": creds.access_key_id,
            "SecretAccessKey": creds.secret_access_key,
            "Token": creds.session_token,
            "Expiration": format_expiration(creds.expiration),
            "AccountId": creds.account_id,
            "RoleArn": creds.role_arn,
        },
        separators=(",", ":"),
    ).encode()


def error_body(code: str, message: str) -> bytes:
    """A JSON error both SDK families parse: JS v3 reads Code/Message, Go and Java code/message."""
    return json.dumps({"Code": code, "Message": message, "code": code, "message": message}).encode()


@dataclass(frozen=True)
class Held:
    """Credentials currently served, with their pre-serialised body."""

    expiration: datetime
    issued_at: datetime
    body: bytes


async def run_in_daemon_thread(fn: Callable[[], T]) -> T:
    """Run a blocking call in a daemon thread and await its result.

    Like asyncio.to_thread, except that an STS call in flight never delays
    process exit: the default executor's threads are joined at shutdown.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def deliver(setter: Callable[[Any], None], value: Any) -> None:
        if not future.done():
            setter(value)

    def work() -> None:
        try:
            result = fn()
        except BaseException as exc:
            outcome: tuple[Callable[[Any], None], Any] = (future.set_exception, exc)
        else:
            outcome = (future.set_result, result)
        try:
            loop.call_soon_threadsafe(deliver, *outcome)
        except RuntimeError:
            pass  # the loop has closed: the process is exiting

    threading.Thread(target=work, name="sidecred-sts", daemon=True).start()
    return await future


class CredentialCache:
    def __init__(
        self,
        source: CredentialSource,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        rng: random.Random | None = None,
        policy: RefreshPolicy = DEFAULT_POLICY,
    ) -> None:
        self.source = source
        self.clock = clock
        # Jitter only spreads load; it needs no cryptographic strength.
        self.rng = rng if rng is not None else random.Random()  # noqa: S311
        self.policy = policy
        self.held: Held | None = None
        self.last_error: StsError | None = None
        self.next_refresh: datetime | None = None
        self.failures_in_row = 0
        self.retry_delay_seconds = 0.0  # the last backoff chosen, for the log
        self.sts_calls = 0
        self.sts_failures = 0

    # --- read side (request path) -------------------------------------------
    def lookup(self, now: datetime) -> tuple[int, bytes]:
        """(200, credentials JSON) while valid credentials are held, else (503, error JSON)."""
        held = self.held
        if held is not None and not is_expired(held.expiration, now):
            return 200, held.body
        code, message = self.unavailable_reason(now)
        return 503, error_body(code, message)

    def unavailable_reason(self, now: datetime) -> tuple[str, str]:
        held, err = self.held, self.last_error
        if held is not None and is_expired(held.expiration, now):
            expired = f"credentials for {self.source.role_arn} expired at {format_expiration(held.expiration)}"
            if err is not None:
                return err.code, f"{expired}; last STS error: {err.message}"
            return "ExpiredToken", expired
        if err is not None:
            return err.code, err.message
        return "CredentialsNotReady", f"credentials for {self.source.role_arn} are being fetched"

    def ready(self, now: datetime) -> bool:
        held = self.held
        return held is not None and not is_expired(held.expiration, now)

    # --- write side (background) ---------------------------------------------
    def store(self, creds: Credentials, issued_at: datetime) -> datetime:
        """Hold new credentials; return when to refresh them."""
        # The first credentials, and the first after failures, may arrive at the
        # same moment across a fleet (a rollout, an STS recovery): spread those.
        desync = self.held is None or self.failures_in_row > 0
        self.held = Held(creds.expiration, issued_at, credentials_body(creds))
        self.last_error = None
        self.failures_in_row = 0
        self.next_refresh = next_refresh_at(
            issued_at, creds.expiration, self.clock(), self.rng, self.policy, desync=desync
        )
        return self.next_refresh

    def record_failure(self, error: StsError) -> datetime:
        """Keep serving what is held; return when to retry (capped, jittered backoff)."""
        self.last_error = error
        self.sts_failures += 1
        delay = retry_delay(self.failures_in_row, self.rng, self.policy)
        self.retry_delay_seconds = delay
        self.failures_in_row += 1
        self.next_refresh = self.clock() + timedelta(seconds=delay)
        return self.next_refresh

    async def refresh_once(self) -> bool:
        """One STS call; True on success. Never raises for STS failures."""
        issued_at = self.clock()
        self.sts_calls += 1
        try:
            creds = await run_in_daemon_thread(self.source.fetch)
        except StsError as exc:
            retry_at = self.record_failure(exc)
            held = self.held
            log.error(
                "sts_failed",
                role_arn=self.source.role_arn,
                session_name=self.source.session_name,
                code=exc.code,
                error=exc.message,
                attempt=self.failures_in_row,
                retry_in=round(self.retry_delay_seconds, 3),
                retry_at=format_expiration(retry_at),
                serving_until=format_expiration(held.expiration) if held else None,
            )
            return False
        next_at = self.store(creds, issued_at)
        log.info(
            "credentials_refreshed",
            role_arn=creds.role_arn,
            session_name=self.source.session_name,
            account_id=creds.account_id,
            expiration=format_expiration(creds.expiration),
            next_refresh=format_expiration(next_at),
        )
        return True

    async def run(self, stop: asyncio.Event) -> None:
        """Fetch now, then refresh on schedule until `stop` is set."""
        while not stop.is_set():
            due = self.next_refresh
            now = self.clock()
            if due is None or now >= due:
                await self.refresh_once()
                continue
            wait = min((due - now).total_seconds(), _MAX_WAIT_SECONDS)
            try:
                await asyncio.wait_for(stop.wait(), timeout=max(wait, 0.0))
            except TimeoutError:
                pass
