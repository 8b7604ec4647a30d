"""Shared by the webhook hardening tests: the fuzzing total in the terminal summary.

Every property test calls `examples.count_example(<test>)` once per example;
the per-test counts and their total are printed at the end of the session so
the fuzzing volume is on record.
"""

from __future__ import annotations

import pytest

from tests.hardening.webhook.examples import EXAMPLES


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not EXAMPLES:
        return
    terminalreporter.section("sidecred webhook fuzzing")
    for name, count in sorted(EXAMPLES.items()):
        terminalreporter.write_line(f"{name}: {count} examples")
    terminalreporter.write_line(f"total hypothesis examples run: {sum(EXAMPLES.values())}")
