"""JSON-lines logging to stderr: one object per line with `ts`, `level`, `event` and fields.

Callers pass only non-secret fields; no credential, key, session token or auth
token is ever handed to these functions.
"""

from __future__ import annotations

import json
import sys
import time
from typing import IO, Any


def _timestamp(now: float) -> str:
    millis = int(now * 1000) % 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{millis:03d}Z"


def format_line(level: str, event: str, fields: dict[str, Any], now: float) -> str:
    """One log line as JSON (pure: the caller supplies the time)."""
    record: dict[str, Any] = {"ts": _timestamp(now), "level": level, "event": event}
    record.update(fields)
    return json.dumps(record, default=str, separators=(",", ":"))


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
