"""The one JSON log schema of every sidecred process: `ts`, `level`, `event`, then fields.

The sidecar writes lines with `format_line` directly; the webhook (and anything
else on stdlib `logging`) installs `JsonLineFormatter`, which maps a record onto
the same schema. Callers pass only non-secret fields.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Mapping
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    import argparse

RESERVED_KEYS = ("ts", "level", "event")

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


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes each record to sys.stderr as it is then, not as it was when logging was set up
    (a command run in-process, as the tests run them, may outlive a swapped stderr)."""

    @property  # type: ignore[override]
    def stream(self) -> IO[str]:
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:
        pass  # StreamHandler.__init__ assigns one; sys.stderr is always used


def configure_logging(level: str = DEFAULT_LEVEL, stream: IO[str] | None = None) -> None:
    """Route stdlib logging (ours, uvicorn's, the kubernetes client's) to one JSON-lines handler.

    The kubernetes client and urllib3 stay at warning or above whatever the level: at debug
    they log requests and responses, which carry tokens.
    """
    handler = _StderrHandler() if stream is None else logging.StreamHandler(stream)
    handler.setFormatter(JsonLineFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(parse_level(level).upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    for name in ("kubernetes", "urllib3"):
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
