"""The credentials the sidecar serves, and why it has none: state and pure decisions.

The request path only reads `CredentialCache.lookup`, a couple of attribute
reads on pre-serialised bytes. The refresh loop (`refresh_loop.py`) is the
only writer: it stores what the source returned, or the failure.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sidecred.sidecar.credentials import Credentials, SourceError
from sidecred.sidecar.schedule import (
    DEFAULT_POLICY,
    RefreshPolicy,
    is_expired,
    next_refresh_at,
    retry_delay,
)
from sidecred.sidecar.wire import credentials_body, error_body, format_expiration


class Held:
    """Credentials currently served, with their pre-serialised body."""

    __slots__ = ("body", "expiration", "issued_at")

    def __init__(self, expiration: datetime, issued_at: datetime, body: bytes) -> None:
        self.expiration = expiration
        self.issued_at = issued_at
        self.body = body


def utc_now() -> datetime:
    return datetime.now(UTC)


class CredentialCache:
    def __init__(
        self,
        role_arn: str,
        *,
        clock: Callable[[], datetime] = utc_now,
        rng: random.Random | None = None,
        policy: RefreshPolicy = DEFAULT_POLICY,
    ) -> None:
        self.role_arn = role_arn
        self.clock = clock
        # Jitter only spreads load; it needs no cryptographic strength.
        self.rng = rng if rng is not None else random.Random()  # noqa: S311
        self.policy = policy
        self.held: Held | None = None
        self.last_error: SourceError | None = None
        self.next_refresh: datetime | None = None
        self.failures_in_row = 0
        self.retry_delay_seconds = 0.0  # the last backoff chosen, for the log
        self.fetches = 0  # calls to the source: STS through `sidecred fetch`, or the broker
        self.fetch_failures = 0

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
            expired = (
                f"credentials for {self.role_arn} expired at {format_expiration(held.expiration)}"
            )
            if err is not None:
                return err.code, f"{expired}; last STS error: {err.message}"
            return "ExpiredToken", expired
        if err is not None:
            return err.code, err.message
        return "CredentialsNotReady", f"credentials for {self.role_arn} are being fetched"

    def ready(self, now: datetime) -> bool:
        """Valid credentials are held and the source's last answer was not a refusal."""
        held = self.held
        return held is not None and not is_expired(held.expiration, now) and not self.refused()

    def refused(self) -> bool:
        """The source's last answer was a refusal (STS AccessDenied, the broker's 403)."""
        err = self.last_error
        return err is not None and err.refused

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

    def record_failure(self, error: SourceError) -> datetime:
        """Keep serving what is held; return when to retry (capped, jittered backoff)."""
        self.last_error = error
        self.fetch_failures += 1
        delay = retry_delay(self.failures_in_row, self.rng, self.policy)
        self.retry_delay_seconds = delay
        self.failures_in_row += 1
        self.next_refresh = self.clock() + timedelta(seconds=delay)
        return self.next_refresh
