"""The benchmarks are not run in CI, so their shared helpers must at least all exist."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
SCRIPTS = sorted(p for p in BENCH.glob("*.py") if p.name != "support.py")


def _support_attributes(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "support"
    }


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_every_support_helper_a_benchmark_uses_exists(script: Path) -> None:
    support = importlib.import_module("bench.support")
    missing = sorted(a for a in _support_attributes(script) if not hasattr(support, a))
    assert not missing, f"{script.name} uses bench.support.{missing}"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_every_benchmark_imports(script: Path) -> None:
    importlib.import_module(f"bench.{script.stem}")
