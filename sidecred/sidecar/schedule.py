"""The refresh schedule and retry backoff: pure functions of time and a random source.

SDKs re-fetch container credentials when little time is left (botocore, the
CLI, Java and .NET at 15 minutes; Go, JS v3 and Ruby at 5). kiam refreshed
late and in lockstep, so SDKs saw short-lived credentials and a mass rollout
hit STS all at once. sidecred refreshes early, spreads a fleet's refreshes
apart once, and then keeps them apart.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta


class RefreshPolicy:
    """The refresh and retry settings; `replace(**changes)` gives a variant.

    A plain class of defaults rather than a dataclass: `dataclasses` imports
    `inspect`, which would cost every pod's serving process about two megabytes.
    """

    # Advisory: aim to refresh once this much time is left (or at half the
    # session, whichever comes first): far above the SDKs' 15 minute threshold,
    # and late enough that a 1 h session costs at most 2 STS calls an hour.
    advisory_remaining: timedelta = timedelta(minutes=30)
    # Mandatory: SDKs treat credentials with this much or less left as due for
    # refresh (botocore, the CLI, Java, .NET); while the source is healthy,
    # served credentials never get this low, however short they arrive.
    mandatory_remaining: timedelta = timedelta(minutes=15)
    # A refresh starts at least this long before `mandatory_remaining` is
    # reached, so that its answer (a `sidecred fetch` run) arrives in time.
    refresh_margin: timedelta = timedelta(seconds=30)
    # Latest: jitter never pushes a refresh past this much time left, so even
    # the latest refresh keeps a margin over `mandatory_remaining`.
    latest_remaining: timedelta = timedelta(minutes=20)
    # Per-pod jitter: a steady refresh happens up to this fraction of the
    # session *after* the advisory point, so pods drift apart instead of
    # refreshing together, and never more often than the advisory point allows.
    jitter_fraction: float = 0.10
    # Never refresh sooner than this fraction of the session after issue
    # (short sessions can't honour the advisory window).
    min_lifetime_fraction: float = 0.25
    # A desync refresh (see next_refresh_at) comes no sooner than this.
    earliest_desync_fraction: float = 0.05
    # Retry after a failed STS call: exponential from base, capped, full jitter.
    backoff_base_seconds: float = 1.0
    backoff_cap_seconds: float = 60.0

    def __init__(self, **changes: object) -> None:
        for name, value in changes.items():
            if name.startswith("_") or not hasattr(RefreshPolicy, name) or callable(value):
                raise TypeError(f"RefreshPolicy has no setting {name!r}")
            setattr(self, name, value)

    def replace(self, **changes: object) -> RefreshPolicy:
        return RefreshPolicy(**{**self.__dict__, **changes})

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RefreshPolicy) and self.__dict__ == other.__dict__

    # Mutable, so not hashable (what @dataclass(eq=True) would say).
    __hash__ = None  # type: ignore[assignment]


DEFAULT_POLICY = RefreshPolicy()


def next_refresh_at(
    issued_at: datetime,
    expires_at: datetime,
    now: datetime,
    rng: random.Random,
    policy: RefreshPolicy = DEFAULT_POLICY,
    *,
    desync: bool = False,
) -> datetime:
    """When to fetch new credentials for a session issued at `issued_at`.

    Steady state: at half the session or `advisory_remaining` before expiry,
    whichever is earlier, plus up to `jitter_fraction` of the session.

    `desync` is for the first credentials a sidecar gets, and the first after
    an STS outage: moments a whole fleet may share (a rollout, a recovery).
    The refresh is then drawn uniformly from one whole steady period that ends
    at the latest steady time, so the fleet's refresh phases spread evenly
    over the period once; the nearly equal steady intervals that follow keep
    them spread. That costs at most one early STS call per pod.

    Never with less than `latest_remaining` left (unless the session is too
    short), never in the past; a steady refresh never comes before
    `min_lifetime_fraction` of the session, a desync one never before
    `earliest_desync_fraction`.

    Short credentials (role chaining, clock skew, a broker's cached ones: for
    example 16 minutes left) would otherwise be served below the SDKs' 15
    minute line: whenever it can, the window is clamped to end
    `mandatory_remaining + refresh_margin` before expiry, and starts no later
    than halfway from issue to that end, so pods still spread out.
    """
    session = expires_at - issued_at
    if session <= timedelta(0):
        return now
    floor = issued_at + session * policy.min_lifetime_fraction
    advisory = min(issued_at + session / 2, expires_at - policy.advisory_remaining)
    latest = max(
        min(advisory + session * policy.jitter_fraction, expires_at - policy.latest_remaining),
        floor,
    )
    start = max(advisory, floor)
    if desync:
        # One whole steady period before the latest steady time: drawn uniformly
        # from it, a fleet's refresh phases end up uniform over the period.
        period = (start - issued_at) + (latest - start) / 2
        start = max(latest - period, issued_at + session * policy.earliest_desync_fraction)
    deadline = expires_at - policy.mandatory_remaining - policy.refresh_margin
    if issued_at < deadline < latest:
        latest = deadline
        start = min(start, issued_at + (deadline - issued_at) / 2)
    target = start + (latest - start) * rng.random()
    return max(target, now)


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
