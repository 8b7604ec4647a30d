"""The command line the servers share (serving flags), and every command's JSON-line logging."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import IO, Any

from sidecred.int_range import int_in_range_type
from sidecred.jsonlog import DEFAULT_LEVEL, add_log_level_argument, format_line, parse_level


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


class _StderrHandler(logging.StreamHandler[IO[str]]):
    """Writes each record to sys.stderr as it is then, not as it was when logging was set up
    (a command run in-process, as the tests run them, may outlive a swapped stderr)."""

    @property
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


def add_server_arguments(parser: argparse.ArgumentParser, default_port: int) -> None:
    """--tls-cert, --tls-key, --port, --host, --kubeconfig and --log-level."""
    parser.add_argument("--tls-cert", required=True, type=Path, help="serving certificate (PEM)")
    parser.add_argument("--tls-key", required=True, type=Path, help="its private key (PEM)")
    parser.add_argument(
        "--port",
        type=int_in_range_type("--port", 1, 65535),
        default=default_port,
        help=f"listen port (default {default_port})",
    )
    parser.add_argument("--host", default="0.0.0.0", help="listen address (default 0.0.0.0)")
    parser.add_argument(
        "--kubeconfig",
        help="kubeconfig file (default: in-cluster service account, then ~/.kube/config)",
    )
    add_log_level_argument(parser)
