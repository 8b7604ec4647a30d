"""The one JSON log schema of every sidecred process: `ts`, `level`, `event`, then fields.

The sidecar writes lines with `format_line` directly; the webhook, the broker and
the other commands (on stdlib `logging`) install `sidecred.serving.cli.JsonLineFormatter`
through `sidecred.serving.cli.configure_logging`, which maps a record onto the same
schema. This module imports neither `logging` nor `typing`: the sidecar's serving
process pays for what it imports, in every pod. Callers pass only non-secret fields.

Fields often carry what a caller sent (a namespace, a pod name, a denial quoting
an annotation), so every line is bounded whatever arrives: a string field is cut
to FIELD_CHARS, a list to LIST_ITEMS (a mapping to MAP_ITEMS), nested values
likewise, and a traceback to EXCEPTION_CHARS. A cut says how much was left out.
"""

from __future__ import annotations

import json
import os
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Mapping
    from typing import Any

# `--log-level` of every command, and its env fallback; lines below the level are not written.
LEVELS = ("debug", "info", "warning", "error")
ENV_LOG_LEVEL = "SIDECRED_LOG_LEVEL"
DEFAULT_LEVEL = "info"
FIELD_CHARS = 1024
LIST_ITEMS = 16
MAP_ITEMS = 64  # a mapping's keys are the code's (the start log's options), rarely a caller's
EXCEPTION_CHARS = 8192
MAX_DEPTH = 4  # nested values below this are shown as text


def parse_level(text: str) -> str:
    """A level name (any case), or ValueError naming the accepted ones."""
    level = text.strip().lower()
    if level not in LEVELS:
        raise ValueError(f"log level {text!r} is not one of {', '.join(LEVELS)}")
    return level


def level_from_env(env: Mapping[str, str] | None = None) -> str:
    """`SIDECRED_LOG_LEVEL`, else info; ValueError when it is set to something else."""
    value = (os.environ if env is None else env).get(ENV_LOG_LEVEL, "")
    return parse_level(value) if value.strip() else DEFAULT_LEVEL


def is_enabled(level: str, threshold: str) -> bool:
    """Whether a line at `level` is written when the threshold is `threshold`."""
    rank = LEVELS.index(level) if level in LEVELS else len(LEVELS)
    return rank >= LEVELS.index(threshold)


def add_log_level_argument(parser: argparse.ArgumentParser) -> None:
    """`--log-level`, defaulting to `SIDECRED_LOG_LEVEL` (checked when the flag is parsed)."""

    def level_type(text: str) -> str:
        import argparse

        try:
            return parse_level(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parser.add_argument(
        "--log-level",
        type=level_type,
        default=os.environ.get(ENV_LOG_LEVEL) or DEFAULT_LEVEL,
        metavar="|".join(LEVELS),
        help=f"least severe log line written, as JSON on stderr (default ${ENV_LOG_LEVEL}, "
        f"else {DEFAULT_LEVEL})",
    )


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
