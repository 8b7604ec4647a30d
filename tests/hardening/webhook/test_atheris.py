"""A short, bounded atheris run (coverage-guided) over parse_review and the deciders."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.fuzz, pytest.mark.slow]

pytest.importorskip("atheris")

ROOT = Path(__file__).resolve().parents[3]
RUNS = 100_000


@pytest.mark.timeout(240)
def test_atheris_finds_no_crash(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.hardening.webhook.atheris_review",
            f"-runs={RUNS}",
            "-seed=1",
            "-max_len=4096",
            str(tmp_path),  # corpus directory: new inputs go here, not into the checkout
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=220,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"Done {RUNS} runs" in result.stderr
