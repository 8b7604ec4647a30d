"""Shared by the fuzzers: their hypothesis settings, and a session count of examples run
(printed at the end, see tests/support/session_records.py)."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

from tests.support.session_records import EXAMPLES


def count_example(name: str) -> None:
    EXAMPLES[name] += 1


# SIDECRED_FUZZ_SCALE multiplies every fuzzer's examples (a deeper search on demand).
SCALE = float(os.environ.get("SIDECRED_FUZZ_SCALE") or 1)


def fuzz(examples: int) -> settings:
    """Reproducible (derandomized), no per-example deadline: CI machines are slow.

    Module-scoped servers are shared by every example, hence function_scoped_fixture.
    """
    return settings(
        max_examples=max(1, round(examples * SCALE)),
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.function_scoped_fixture,
        ],
    )
