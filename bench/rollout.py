"""Benchmark 5: a mass rollout's STS call rate, from the real refresh code on a simulated clock.

500 pods start within 10 s. Each pod is a real `sidecar.cache.CredentialCache`
(the real schedule, `sidecar.refresh.next_refresh_at`, and the real
`refresh_once`) whose clock is simulated and whose STS source is a stand-in
that records the simulated time of every call and issues 1-hour credentials.
No processes and no waiting: the simulation jumps from one due refresh to the
next. Each pod has its own seeded random source, as each real sidecar has its own.

Reported: STS calls per 10 s window over the simulated hours, the busiest
window against the average rate after the first background refresh, and the
spread of the second-generation refresh times. Baselines in the same run: the
same code with jitter switched off (lockstep, as kiam's server refreshed), and
the same number of calls placed uniformly at random (the floor set by chance).

Target: no 10 s window after the first refresh above 2x the average rate.

    python3 bench/rollout.py [--pods 500] [--hours 4] [--seed 1]
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import random
import sys
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import support
from sidecar import log
from sidecar.cache import CredentialCache
from sidecar.refresh import DEFAULT_POLICY, RefreshPolicy
from sidecar.sources import Credentials

WINDOW_S = 10
START_SPREAD_S = 10.0
SESSION_S = 3600
EPOCH = datetime(2025, 1, 1, tzinfo=UTC)
TARGET_PEAK_RATIO = 2.0


@dataclass
class SimClock:
    now: datetime = EPOCH

    def __call__(self) -> datetime:
        return self.now


@dataclass
class SimulatedSts:
    """A credential source that answers at once and records when (simulated) it was called."""

    clock: SimClock
    role_arn: str = support.ROLE_ARN
    session_name: str = "shop.bench"
    calls: list[float] = field(default_factory=list)

    def fetch(self) -> Credentials:
        now = self.clock()
        self.calls.append((now - EPOCH).total_seconds())
        return Credentials(
            access_key_id="ASIASIMULATED",
            secret_access_key="simulated",
            session_token="simulated",
            expiration=now + timedelta(seconds=SESSION_S),
            account_id=support.MOTO_ACCOUNT_ID,
            role_arn=self.role_arn,
        )


async def simulate(pods: int, hours: float, policy: RefreshPolicy, seed: int) -> list[list[float]]:
    """Every pod's STS call times (simulated seconds since the rollout began)."""
    clock = SimClock()
    starts = random.Random(seed)
    sources = [SimulatedSts(clock) for _ in range(pods)]
    caches = [
        CredentialCache(src, clock=clock, rng=random.Random(seed * 100_003 + i), policy=policy)
        for i, src in enumerate(sources)
    ]
    horizon = EPOCH + timedelta(hours=hours)
    due = [(EPOCH + timedelta(seconds=starts.uniform(0, START_SPREAD_S)), i) for i in range(pods)]
    heapq.heapify(due)
    while due:
        when, i = heapq.heappop(due)
        clock.now = when
        if not await caches[i].refresh_once():
            raise RuntimeError("the simulated STS never fails")
        next_at = caches[i].next_refresh
        if next_at is not None and next_at < horizon:
            heapq.heappush(due, (next_at, i))
    return [src.calls for src in sources]


@dataclass(frozen=True)
class RateStats:
    calls: int
    first_refresh_s: float
    windows: int
    average: float  # calls per window, from the first background refresh on
    peak: int
    peak_at_s: float
    windows_over_target: int

    @property
    def ratio(self) -> float:
        return self.peak / self.average


def rate_stats(times: list[float], first_refresh: float, end: float) -> RateStats:
    start_window = int(first_refresh // WINDOW_S)
    end_window = int(end // WINDOW_S)  # the last full window ends at `end`
    counts = Counter(int(t // WINDOW_S) for t in times)
    span = range(start_window, end_window)
    in_span = [counts.get(w, 0) for w in span]
    average = sum(in_span) / len(in_span)
    peak = max(in_span)
    return RateStats(
        calls=len(times),
        first_refresh_s=first_refresh,
        windows=len(in_span),
        average=average,
        peak=peak,
        peak_at_s=(start_window + in_span.index(peak)) * WINDOW_S,
        windows_over_target=sum(1 for c in in_span if c > TARGET_PEAK_RATIO * average),
    )


def analyse(per_pod: list[list[float]], hours: float) -> tuple[RateStats, list[float]]:
    first_refresh = min(calls[1] for calls in per_pod if len(calls) > 1)
    times = [t for calls in per_pod for t in calls]
    stats = rate_stats(times, first_refresh, hours * 3600)
    second_generation = [calls[2] for calls in per_pod if len(calls) > 2]
    return stats, second_generation


def timeline(per_pod: list[list[float]], hours: float) -> str:
    """Calls per 10-minute bucket as a text bar chart (the 10 s windows are too many to print)."""
    bucket = 600
    counts = Counter(int(t // bucket) for calls in per_pod for t in calls)
    peak = max(counts.values())
    lines = []
    for b in range(int(hours * 3600 // bucket)):
        n = counts.get(b, 0)
        lines.append(f"{b * 10:4d}-{b * 10 + 10:<4d} min {n:5d} {'#' * round(40 * n / peak)}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pods", type=int, default=500)
    parser.add_argument("--hours", type=float, default=4.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    log.info = log.debug = lambda *a, **k: None  # type: ignore[assignment,method-assign]  # thousands of refresh lines

    runs = {
        "sidecred (default policy)": DEFAULT_POLICY,
        "baseline: lockstep (jitter off)": replace(DEFAULT_POLICY, jitter_fraction=0.0),
        # What-if: jitter as wide as the floor allows (refresh between 25% and 50% of the session).
        "what-if: jitter_fraction 0.25": replace(DEFAULT_POLICY, jitter_fraction=0.25),
    }
    results = {}
    for name, policy in runs.items():
        per_pod = asyncio.run(simulate(args.pods, args.hours, policy, args.seed))
        results[name] = (per_pod, *analyse(per_pod, args.hours))

    ours_per_pod, ours, _ = results["sidecred (default policy)"]
    # The floor set by chance: as many calls, over the same span, at uniformly random times.
    chance = random.Random(args.seed)
    end = args.hours * 3600
    in_span = [t for calls in ours_per_pod for t in calls if t >= ours.first_refresh_s]
    uniform = [chance.uniform(ours.first_refresh_s, end) for _ in in_span]
    floor = rate_stats(uniform, ours.first_refresh_s, end)

    rows = []
    for name, (_, stats, second) in results.items():
        spread = max(second) - min(second)
        rows.append(
            [
                name,
                stats.calls,
                f"{stats.calls / args.pods / args.hours:.2f}",
                f"{stats.first_refresh_s:.0f}",
                f"{stats.average:.2f}",
                f"{stats.peak} (at {stats.peak_at_s:.0f} s)",
                f"{stats.ratio:.2f}x",
                f"{stats.windows_over_target}/{stats.windows}",
                f"{min(second):.0f}-{max(second):.0f} s (spread {spread:.0f} s, p10-p90 {support.percentile(second, 90) - support.percentile(second, 10):.0f} s)",
            ]
        )
    rows.append(
        [
            "baseline: same calls at uniformly random times",
            len(uniform),
            "",
            "",
            f"{floor.average:.2f}",
            str(floor.peak),
            f"{floor.ratio:.2f}x",
            f"{floor.windows_over_target}/{floor.windows}",
            "",
        ]
    )
    table = support.markdown_table(
        [
            "schedule",
            "STS calls",
            "per pod-hour",
            "first refresh s",
            "avg calls / 10 s",
            "busiest 10 s",
            "busiest / avg",
            "windows > 2x avg",
            "2nd-generation refresh times",
        ],
        rows,
    )
    # Where the peaks sit: the first background generation, or later.
    gen1_end = max(calls[1] for calls in ours_per_pod if len(calls) > 1)
    later = rate_stats([t for calls in ours_per_pod for t in calls], gen1_end, end)
    summary = support.markdown_table(
        ["target", "measured", "result"],
        [
            [
                f"no 10 s window after the first refresh above {TARGET_PEAK_RATIO:g}x the average rate",
                f"busiest {ours.peak} calls vs average {ours.average:.2f} ({ours.ratio:.2f}x); "
                f"{ours.windows_over_target} of {ours.windows} windows above 2x "
                f"(uniformly random calls: {floor.ratio:.2f}x, {floor.windows_over_target} windows)",
                support.verdict(ours.ratio <= TARGET_PEAK_RATIO),
            ]
        ],
    )
    chart = timeline(ours_per_pod, args.hours)
    print(table + "\n\n" + summary + "\n\nsidecred, STS calls per 10 minutes:\n" + chart)
    body = f"""
Setup: {args.pods} pods start at uniformly random times within {START_SPREAD_S:g} s; each is a real
`CredentialCache` (real `next_refresh_at`, real `refresh_once`) on a simulated clock, with a
stand-in STS that answers at once with {SESSION_S} s credentials and records the simulated call time.
{args.hours:g} simulated hours, seed {args.seed}. The average rate counts every call from the first
background refresh to the end; "2nd generation" is each pod's third STS call (its second refresh).

{table}

{summary}

After the first refresh generation has passed (from {gen1_end:.0f} s on) the busiest window is
{later.peak} calls against an average of {later.average:.2f} ({later.ratio:.2f}x).

STS calls per 10 minutes (sidecred, default policy):

```
{chart}
```
"""
    support.write_section("rollout", "5. Mass rollout", "python3 bench/rollout.py", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
