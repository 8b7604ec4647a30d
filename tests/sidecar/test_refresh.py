"""The refresh schedule and retry backoff: pure, with a fixed clock and random source."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from sidecar.refresh import DEFAULT_POLICY, is_expired, next_refresh_at, retry_delay

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
        # up to 10 % of the session earlier with jitter.
        (3600, 1.0, timedelta(minutes=24)),
        (3600, 0.5, timedelta(minutes=27)),
        # 12 h: half the session comes first.
        (43200, 0.0, timedelta(hours=6)),
        (43200, 1.0, timedelta(hours=6) - timedelta(minutes=72)),
        # 2 h: half (60 min) comes before "30 min left" (90 min).
        (7200, 0.0, timedelta(minutes=60)),
        # 15 min (STS minimum): the advisory window can't fit; floor at a quarter.
        (900, 0.0, timedelta(seconds=225)),
    ],
)
def test_schedule_table(session_s, jitter, expected_after_issue):
    expires = ISSUED + timedelta(seconds=session_s)
    at = next_refresh_at(ISSUED, expires, ISSUED, FixedRandom(jitter))
    assert at == ISSUED + expected_after_issue


@pytest.mark.parametrize("session_s", [3600, 7200, 21600, 43200])
@pytest.mark.parametrize("jitter", [0.0, 0.3, 0.999])
def test_served_credentials_keep_more_than_the_sdk_threshold(session_s, jitter):
    expires = ISSUED + timedelta(seconds=session_s)
    at = next_refresh_at(ISSUED, expires, ISSUED, FixedRandom(jitter))
    assert expires - at > DEFAULT_POLICY.mandatory_remaining
    assert expires - at >= DEFAULT_POLICY.advisory_remaining


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
    assert min(times) >= ISSUED + timedelta(minutes=24)
    assert max(times) <= ISSUED + timedelta(minutes=30)


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
