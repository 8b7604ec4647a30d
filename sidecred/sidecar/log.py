"""JSON-lines logging to stderr in sidecred's one schema (`sidecred.jsonlog`).

Callers pass only non-secret fields; no credential, key, session token or auth
token is ever handed to these functions.
"""

from __future__ import annotations

import sys
import time

from sidecred.jsonlog import format_line, is_enabled, level_from_env, parse_level

TYPE_CHECKING = False  # `typing` is not imported: the serving process would pay ~2 MB for it
if TYPE_CHECKING:
    from typing import IO, Any

# The least severe level written; None until set or first read from SIDECRED_LOG_LEVEL.
_threshold: str | None = None


def set_level(level: str) -> None:
    """Write only lines at `level` or above (ValueError for an unknown level)."""
    global _threshold
    _threshold = parse_level(level)


def threshold() -> str:
    """The level in force: set_level's, else SIDECRED_LOG_LEVEL's (info when unset or bad;
    `main` checks the variable at start-up and refuses a bad one)."""
    if _threshold is None:
        try:
            set_level(level_from_env())
        except ValueError:
            set_level("info")
    assert _threshold is not None
    return _threshold


def log(level: str, event: str, stream: IO[str] | None = None, **fields: Any) -> None:
    if not is_enabled(level, threshold()):
        return
    out = sys.stderr if stream is None else stream
    try:
        out.write(format_line(level, event, fields, time.time()) + "\n")
        out.flush()
    except (OSError, ValueError):
        # A closed or broken stderr must never take the credential server down.
        pass


def debug(event: str, **fields: Any) -> None:
    log("debug", event, **fields)


def info(event: str, **fields: Any) -> None:
    log("info", event, **fields)


def warning(event: str, **fields: Any) -> None:
    log("warning", event, **fields)


def error(event: str, **fields: Any) -> None:
    log("error", event, **fields)
