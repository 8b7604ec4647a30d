"""The one JSON log schema of every sidecred process: `ts`, `level`, `event`, then fields.

The sidecar writes lines with `format_line` directly; the webhook and the broker
(on stdlib `logging`) install `sidecred.serving.cli.JsonLineFormatter`, which maps
a record onto the same schema. This module imports neither `logging` nor
`typing`: the sidecar's serving process pays for what it imports, in every pod.
Callers pass only non-secret fields.
"""

from __future__ import annotations

import json
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
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
