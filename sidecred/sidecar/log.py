"""JSON-lines logging to stderr in sidecred's one schema (`sidecred.jsonlog`).

Callers pass only non-secret fields; no credential, key, session token or auth
token is ever handed to these functions.
"""

from __future__ import annotations

import sys
import time

from sidecred.jsonlog import format_line

TYPE_CHECKING = False  # `typing` is not imported: the serving process would pay ~2 MB for it
if TYPE_CHECKING:
    from typing import IO, Any


def log(level: str, event: str, stream: IO[str] | None = None, **fields: Any) -> None:
    out = sys.stderr if stream is None else stream
    try:
        out.write(format_line(level, event, fields, time.time()) + "\n")
        out.flush()
    except (OSError, ValueError):
        # A closed or broken stderr must never take the credential server down.
        pass


def info(event: str, **fields: Any) -> None:
    log("info", event, **fields)


def warning(event: str, **fields: Any) -> None:
    log("warning", event, **fields)


def error(event: str, **fields: Any) -> None:
    log("error", event, **fields)
