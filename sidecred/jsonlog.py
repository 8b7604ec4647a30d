"""The one JSON log schema of every sidecred process: `ts`, `level`, `event`, then fields.

The sidecar writes lines with `format_line` directly; the webhook (and anything
else on stdlib `logging`) installs `JsonLineFormatter`, which maps a record onto
the same schema. Callers pass only non-secret fields.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any


def format_timestamp(now: float) -> str:
    """RFC 3339 UTC with milliseconds and a `Z`, e.g. `2026-11-30T17:20:01.042Z`."""
    millis = int(now * 1000) % 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{millis:03d}Z"


def format_line(level: str, event: str, fields: dict[str, Any], now: float) -> str:
    """One log line as compact JSON (pure: the caller supplies the time).

    A field named like a schema key never overwrites `ts`, `level` or `event`.
    """
    record: dict[str, Any] = {"ts": format_timestamp(now), "level": level, "event": event}
    for key, value in fields.items():
        record.setdefault(key, value)
    return json.dumps(record, default=str, separators=(",", ":"))


class JsonLineFormatter(logging.Formatter):
    """stdlib logging in the shared schema: `event` is the message, `logger` the logger's name.

    Fields come from `extra={"fields": {...}}`; a traceback goes in `exception`.
    """

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = {"logger": record.name}
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            fields.update(extra)
        if record.exc_info:
            fields["exception"] = self.formatException(record.exc_info)
        return format_line(record.levelname.lower(), record.getMessage(), fields, record.created)
