"""A session count of hypothesis examples run, printed by conftest at the end."""

from __future__ import annotations

import collections

EXAMPLES: collections.Counter[str] = collections.Counter()


def count_example(name: str) -> None:
    EXAMPLES[name] += 1
