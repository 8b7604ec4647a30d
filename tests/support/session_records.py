"""What tests record for the end-of-session summary: the SDK compatibility matrix and the
fuzzing volume. Under pytest-xdist each worker records its share; tests/conftest.py
gathers them on the controller and prints them there."""

from __future__ import annotations

import collections
from typing import Any

import pytest

# (sdk label, version, token mode, result) per compatibility test.
COMPAT: list[list[str]] = []
# Hypothesis examples run, per fuzz test.
EXAMPLES: collections.Counter[str] = collections.Counter()


def export() -> dict[str, Any]:
    return {"compat": COMPAT, "examples": dict(EXAMPLES)}


def merge(records: dict[str, Any]) -> None:
    COMPAT.extend(records.get("compat", []))
    EXAMPLES.update(records.get("examples", {}))


def write_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if COMPAT:
        terminalreporter.section("sidecred SDK compatibility")
        for label, version, mode, result in COMPAT:
            terminalreporter.write_line(f"compat: {label} {version} token={mode}: {result}")
        terminalreporter.write_line("")
        terminalreporter.write_line("| SDK | version | token mode | result |")
        terminalreporter.write_line("| --- | --- | --- | --- |")
        for label, version, mode, result in COMPAT:
            terminalreporter.write_line(f"| {label} | {version} | {mode} | {result} |")
    if EXAMPLES:
        terminalreporter.section("sidecred webhook fuzzing")
        for name, count in sorted(EXAMPLES.items()):
            terminalreporter.write_line(f"{name}: {count} examples")
        terminalreporter.write_line(f"total hypothesis examples run: {sum(EXAMPLES.values())}")
