"""The one JSON log schema of every sidecred process: `ts`, `level`, `event`, then fields.

The sidecar writes lines with `format_line` directly; the webhook, the broker and
the other commands (on stdlib `logging`) install `sidecred.serving.cli.JsonLineFormatter`
through `sidecred.serving.cli.configure_logging`, which maps a record onto the same
schema. This module imports neither `logging` nor `typing`: the sidecar's serving
process pays for what it imports, in every pod. Callers pass only non-secret fields.
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
