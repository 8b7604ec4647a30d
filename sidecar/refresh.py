"""The refresh schedule and retry backoff: pure functions of time and a random source.

SDKs re-fetch container credentials when little time is left (botocore, the
CLI, Java and .NET at 15 minutes; Go, JS v3 and Ruby at 5). kiam refreshed
late and in lockstep, so SDKs saw short-lived credentials and a mass rollout
hit STS all at once. sidecred refreshes early, with per-pod jitter.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class RefreshPolicy:
    # Advisory: refresh in the background once this much time is left (or at half
    # the session, whichever comes first), so served credentials always keep far
    # more than the SDKs' 15 minute refresh threshold.
    advisory_remaining: timedelta = timedelta(minutes=30)
    # Mandatory: SDKs treat credentials with this much or less left as due for
    # refresh; while STS is healthy, served credentials never get this low.
    mandatory_remaining: timedelta = timedelta(minutes=15)
    # Per-pod jitter: refresh up to this fraction of the session *earlier*, so
    # pods started together don't refresh together.
    jitter_fraction: float = 0.10
    # Short sessions (under an hour) can't honour the advisory window; never
    # refresh sooner than this fraction of the session after issue.
    min_lifetime_fraction: float = 0.25
    # Retry after a failed STS call: exponential from base, capped, full jitter.
    backoff_base_seconds: float = 1.0
    backoff_cap_seconds: float = 60.0


DEFAULT_POLICY = RefreshPolicy()


def next_refresh_at(
    issued_at: datetime,
    expires_at: datetime,
    now: datetime,
    rng: random.Random,
    policy: RefreshPolicy = DEFAULT_POLICY,
) -> datetime:
    """When to fetch new credentials for a session issued at `issued_at`.

    At half the session or `advisory_remaining` before expiry, whichever is
    earlier, moved earlier by up to `jitter_fraction` of the session; never
    before `min_lifetime_fraction` of the session, and never in the past.
    """
    session = expires_at - issued_at
    if session <= timedelta(0):
        return now
    target = min(issued_at + session / 2, expires_at - policy.advisory_remaining)
    target -= session * (policy.jitter_fraction * rng.random())
    floor = issued_at + session * policy.min_lifetime_fraction
    return max(target, floor, now)


def retry_delay(attempt: int, rng: random.Random, policy: RefreshPolicy = DEFAULT_POLICY) -> float:
    """Seconds to wait before retry number `attempt` (0-based) after a failed STS call.

    "Full jitter": uniform between 0 and min(cap, base * 2**attempt), so pods
    that failed together spread their retries out.
    """
    ceiling = min(policy.backoff_cap_seconds, policy.backoff_base_seconds * 2 ** min(attempt, 32))
    return rng.uniform(0.0, ceiling)


def is_expired(expires_at: datetime, now: datetime) -> bool:
    """Credentials are served until they are truly expired."""
    return now >= expires_at
