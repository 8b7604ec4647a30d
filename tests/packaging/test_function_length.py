"""Shipped functions stay short enough to read at once: none over 80 lines (from `def`
to the last line, docstring included), and at most three over 60."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "sidecred"
LIMIT, LONG, MOST_LONG = 80, 60, 3


def function_lengths() -> dict[str, int]:
    lengths = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                name = f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name}"
                lengths[name] = (node.end_lineno or node.lineno) - node.lineno + 1
    return lengths


def test_no_shipped_function_is_over_80_lines() -> None:
    lengths = function_lengths()
    assert len(lengths) > 300  # every module was read
    assert {name: n for name, n in lengths.items() if n > LIMIT} == {}


def test_at_most_three_shipped_functions_are_over_60_lines() -> None:
    long = {name: n for name, n in function_lengths().items() if n > LONG}
    assert len(long) <= MOST_LONG, long
