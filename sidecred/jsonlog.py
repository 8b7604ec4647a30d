"""The one JSON log schema of every sidecred process: `ts`, `level`, `event`, then fields.

The sidecar writes lines with `format_line` directly; the webhook (and anything
else on stdlib `logging`) installs `JsonLineFormatter`, which maps a record onto
the same schema. Callers pass only non-secret fields.

Fields often carry what a caller sent (a namespace, a pod name, a denial quoting
an annotation), so every line is bounded whatever arrives: a string field is cut
to FIELD_CHARS, a list to LIST_ITEMS (a mapping to MAP_ITEMS), nested values likewise, and a traceback to
EXCEPTION_CHARS. A cut says how much was left out.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

RESERVED_KEYS = ("ts", "level", "event")
FIELD_CHARS = 1024
LIST_ITEMS = 16
MAP_ITEMS = 64  # a mapping's keys are the code's (the start log's options), rarely a caller's
EXCEPTION_CHARS = 8192
MAX_DEPTH = 4  # nested values below this are shown as text


def cut_text(text: str, limit: int = FIELD_CHARS) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}...({len(text) - limit} more characters)"


def bounded(value: Any, depth: int = 0) -> Any:
    """`value` with every string cut, every list and mapping shortened, nesting bounded."""
    if isinstance(value, str):
        return cut_text(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if depth >= MAX_DEPTH or not isinstance(value, list | tuple | dict):
        return cut_text(str(value))
    if isinstance(value, dict):
        items = list(value.items())
        shown = {cut_text(str(k), 128): bounded(v, depth + 1) for k, v in items[:MAP_ITEMS]}
        if len(items) > MAP_ITEMS:
            shown["..."] = f"{len(items) - MAP_ITEMS} more"
        return shown
    shown_items = [bounded(v, depth + 1) for v in value[:LIST_ITEMS]]
    if len(value) > LIST_ITEMS:
        shown_items.append(f"...({len(value) - LIST_ITEMS} more)")
    return shown_items


def format_timestamp(now: float) -> str:
    """RFC 3339 UTC with milliseconds and a `Z`, e.g. `2026-11-30T17:20:01.042Z`."""
    millis = int(now * 1000) % 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{millis:03d}Z"


def format_line(level: str, event: str, fields: dict[str, Any], now: float) -> str:
    """One log line as compact JSON (pure: the caller supplies the time).

    A field named like a schema key never overwrites `ts`, `level` or `event`; every
    field is bounded (`bounded`; a traceback in `exception` to EXCEPTION_CHARS).
    """
    record: dict[str, Any] = {"ts": format_timestamp(now), "level": level, "event": cut_text(event)}
    for key, value in fields.items():
        if key == "exception" and isinstance(value, str):
            record.setdefault(key, cut_text(value, EXCEPTION_CHARS))
        else:
            record.setdefault(cut_text(str(key), 128), bounded(value))
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
