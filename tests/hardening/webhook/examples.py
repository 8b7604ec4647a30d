"""Shared by the fuzzers: their hypothesis settings, and a session count of examples run
(printed by conftest at the end)."""

from __future__ import annotations

import collections

from hypothesis import HealthCheck, settings

EXAMPLES: collections.Counter[str] = collections.Counter()


def count_example(name: str) -> None:
    EXAMPLES[name] += 1


def fuzz(examples: int) -> settings:
    """Reproducible (derandomized), no per-example deadline: CI machines are slow.

    Module-scoped servers are shared by every example, hence function_scoped_fixture.
    """
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.function_scoped_fixture,
        ],
    )
