"""The refresh schedule and retry backoff: pure, with a fixed clock and random source."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sidecred.sidecar.schedule import DEFAULT_POLICY, is_expired, next_refresh_at, retry_delay

ISSUED = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


class FixedRandom(random.Random):
    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def random(self) -> float:
        return self.value

    def uniform(self, a: float, b: float) -> float:
        return a + (b - a) * self.value


@pytest.mark.parametrize(
    ("session_s", "jitter", "expected_after_issue"),
    [
        # 1 h: half the session and "30 min left" coincide.
        (3600, 0.0, timedelta(minutes=30)),
        # up to 10 % of the session later with jitter: at most 2 STS calls an hour.
        (3600, 1.0, timedelta(minutes=36)),
        (3600, 0.5, timedelta(minutes=33)),
        # 12 h: half the session comes first.
        (43200, 0.0, timedelta(hours=6)),
        (43200, 1.0, timedelta(hours=6) + timedelta(minutes=72)),
        # 2 h: half (60 min) comes before "30 min left" (90 min).
        (7200, 0.0, timedelta(minutes=60)),
        (7200, 1.0, timedelta(minutes=72)),
        # 15 min (STS minimum): the advisory window can't fit; floor at a quarter.
        (900, 0.0, timedelta(seconds=225)),
        (900, 1.0, timedelta(seconds=225)),
    ],
)
def test_steady_schedule_table(session_s, jitter, expected_after_issue):
    expires = ISSUED + timedelta(seconds=session_s)
    at = next_refresh_at(ISSUED, expires, ISSUED, FixedRandom(jitter))
    assert at == ISSUED + expected_after_issue


@pytest.mark.parametrize(
    ("session_s", "jitter", "expected_after_issue"),
    [
        # 1 h, desync: one whole steady period (33 min on average) ending at the
        # latest steady time (36 min).
        (3600, 0.0, timedelta(minutes=3)),
        (3600, 1.0, timedelta(minutes=36)),
        (3600, 0.5, timedelta(minutes=19, seconds=30)),
        # 12 h: the period averages 6 h 36 min.
        (43200, 0.0, timedelta(minutes=36)),
        (43200, 1.0, timedelta(hours=7, minutes=12)),
        # 15 min: no earlier than 5 % of the session (45 s).
        (900, 0.0, timedelta(seconds=45)),
        (900, 1.0, timedelta(seconds=225)),
    ],
)
def test_desync_schedule_table(session_s, jitter, expected_after_issue):
    expires = ISSUED + timedelta(seconds=session_s)
    at = next_refresh_at(ISSUED, expires, ISSUED, FixedRandom(jitter), desync=True)
    assert at == ISSUED + expected_after_issue


@given(
    lifetime_s=st.integers(min_value=16 * 60, max_value=12 * 3600),
    draw=st.floats(min_value=0.0, max_value=1.0, exclude_max=True),
    desync=st.booleans(),
    fetch_s=st.floats(min_value=0.0, max_value=5.0),
)
def test_no_response_ever_carries_fifteen_minutes_or_less(lifetime_s, draw, desync, fetch_s):
    """For every lifetime from 16 min to 12 h and every draw: refreshed before the SDKs' line.

    `fetch_s` is how long the fetch that brought the credentials took (`now`
    is that much after issue); the next refresh then starts with the refresh
    margin still ahead of the 15-minute line.
    """
    expires = ISSUED + timedelta(seconds=lifetime_s)
    now = ISSUED + timedelta(seconds=fetch_s)
    at = next_refresh_at(ISSUED, expires, now, FixedRandom(draw), desync=desync)
    assert at >= now
    left = expires - at
    assert left >= DEFAULT_POLICY.mandatory_remaining + DEFAULT_POLICY.refresh_margin
    assert left > timedelta(minutes=15)
    if lifetime_s >= 3600:  # room for the whole window: the margin over the SDKs' line holds
        assert left >= DEFAULT_POLICY.latest_remaining > DEFAULT_POLICY.mandatory_remaining


@pytest.mark.parametrize("desync", [False, True])
def test_sixteen_minute_credentials_keep_a_fleet_spread(desync):
    """The clamped window still spreads pods: half of what is left before the line."""
    expires = ISSUED + timedelta(minutes=16)
    times = {
        next_refresh_at(ISSUED, expires, ISSUED, random.Random(seed), desync=desync)
        for seed in range(100)
    }
    assert len(times) == 100
    assert min(times) < ISSUED + timedelta(seconds=17)
    assert max(times) > ISSUED + timedelta(seconds=28)
    assert max(times) <= ISSUED + timedelta(seconds=30)


@pytest.mark.parametrize("jitter", [0.0, 0.3, 0.999])
def test_steady_one_hour_sessions_cost_at_most_two_sts_calls_an_hour(jitter):
    expires = ISSUED + timedelta(hours=1)
    at = next_refresh_at(ISSUED, expires, ISSUED, FixedRandom(jitter))
    assert at - ISSUED >= timedelta(minutes=30)


def test_never_schedules_in_the_past():
    expires = ISSUED + timedelta(hours=1)
    late = ISSUED + timedelta(minutes=50)
    assert next_refresh_at(ISSUED, expires, late, FixedRandom(0.5)) == late


def test_degenerate_session_refreshes_now():
    assert next_refresh_at(ISSUED, ISSUED, ISSUED, FixedRandom(0.5)) == ISSUED


def test_jitter_spreads_pods():
    expires = ISSUED + timedelta(hours=1)
    times = {next_refresh_at(ISSUED, expires, ISSUED, random.Random(seed)) for seed in range(50)}
    assert len(times) > 40
    assert min(times) >= ISSUED + timedelta(minutes=30)
    assert max(times) <= ISSUED + timedelta(minutes=36)


def test_desync_spreads_a_fleet_over_a_whole_refresh_period():
    # 500 pods issued at the same instant (a rollout): their first refreshes cover
    # 3-36 min, a whole steady period, not just the 6 min of steady jitter.
    expires = ISSUED + timedelta(hours=1)
    rng = random.Random(7)
    times = sorted(next_refresh_at(ISSUED, expires, ISSUED, rng, desync=True) for _ in range(500))
    assert times[0] < ISSUED + timedelta(minutes=4)
    assert times[-1] > ISSUED + timedelta(minutes=35)
    # no minute of the 33 holds more than three times its fair share
    per_minute: dict[int, int] = {}
    for t in times:
        minute = int((t - ISSUED).total_seconds() // 60)
        per_minute[minute] = per_minute.get(minute, 0) + 1
    assert max(per_minute.values()) < 3 * 500 / 33


@pytest.mark.parametrize(
    ("attempt", "ceiling"), [(0, 1), (1, 2), (2, 4), (5, 32), (6, 60), (20, 60), (1000, 60)]
)
def test_backoff_is_exponential_and_capped(attempt, ceiling):
    assert retry_delay(attempt, FixedRandom(1.0)) == ceiling
    assert retry_delay(attempt, FixedRandom(0.0)) == 0


def test_backoff_has_full_jitter():
    delays = [retry_delay(4, random.Random(seed)) for seed in range(100)]
    assert all(0 <= d <= 16 for d in delays)
    assert len(set(delays)) == 100
    assert min(delays) < 4 and max(delays) > 12


def test_expired_only_at_expiry():
    assert not is_expired(ISSUED, ISSUED - timedelta(seconds=1))
    assert is_expired(ISSUED, ISSUED)
