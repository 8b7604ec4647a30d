"""Suite-wide guard: every module is imported by its `sidecred.*` name only.

The top-level webhook/, sidecar/, certs/ and broker/ are symlinks into sidecred/
(the repository's layout), and the repository root is on sys.path for `tests.*`,
so without this guard `import webhook.decide` would load a second copy of
`sidecred.webhook.decide`, with its own module state.
"""

from __future__ import annotations

import importlib.abc
import os
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any

import pytest

LAYOUT_LINKS = frozenset({"webhook", "sidecar", "certs", "broker"})


class _LayoutLinkGuard(importlib.abc.MetaPathFinder):
    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> ModuleSpec | None:
        top = fullname.partition(".")[0]
        if top in LAYOUT_LINKS and _resolves_to_link(top):
            raise ImportError(f"import sidecred.{fullname}, not {fullname} (a layout symlink)")
        return None


def _resolves_to_link(name: str) -> bool:
    # Only the repository root's symlinks are refused; a test package that
    # happens to be called `broker` (tests/broker under importlib mode) is not.
    for entry in sys.path:
        candidate = os.path.join(entry or ".", name)
        if os.path.exists(candidate):
            return os.path.islink(candidate)
    return False


sys.meta_path.insert(0, _LayoutLinkGuard())

from tests.support import session_records  # noqa: E402  (after the guard is in place)

# --- the end-of-session summary, gathered from every pytest-xdist worker ----------


def pytest_sessionfinish(session: pytest.Session) -> None:
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: hand the records to the controller
        workeroutput["sidecred_records"] = session_records.export()


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    session_records.merge(getattr(node, "workeroutput", {}).get("sidecred_records", {}))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    session_records.write_summary(terminalreporter)
