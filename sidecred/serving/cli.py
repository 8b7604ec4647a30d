"""The command line the servers share (serving flags), and every command's JSON-line logging."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import IO, Any

from sidecred.int_range import int_in_range_type, parse_int_in_range
from sidecred.jsonlog import DEFAULT_LEVEL, add_log_level_argument, format_line, parse_level
from sidecred.serving.listen import BOTH_FAMILIES

SHUTDOWN_DELAY_ENV = "SIDECRED_SHUTDOWN_DELAY"
MAX_SHUTDOWN_DELAY = 600


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
    """--tls-cert, --tls-key, --port, --host, --shutdown-delay, --kubeconfig and --log-level."""
    parser.add_argument("--tls-cert", required=True, type=Path, help="serving certificate (PEM)")
    parser.add_argument("--tls-key", required=True, type=Path, help="its private key (PEM)")
    parser.add_argument(
        "--port",
        type=int_in_range_type("--port", 1, 65535),
        default=default_port,
        help=f"listen port (default {default_port})",
    )
    parser.add_argument(
        "--host",
        default=BOTH_FAMILIES,
        help="listen address (default: every address, IPv4 and IPv6; e.g. 127.0.0.1 or ::)",
    )
    parser.add_argument(
        "--shutdown-delay",
        type=int_in_range_type("--shutdown-delay", 0, MAX_SHUTDOWN_DELAY),
        default=None,
        metavar="SECONDS",
        help="on SIGTERM keep answering this long, not ready and closing each connection, "
        f"before stopping (default 0) [env {SHUTDOWN_DELAY_ENV}]",
    )
    parser.add_argument(
        "--kubeconfig",
        help="kubeconfig file (default: in-cluster service account, then ~/.kube/config)",
    )
    add_log_level_argument(parser)


def shutdown_delay(args: argparse.Namespace, env: dict[str, str] | None = None) -> int:
    """--shutdown-delay, else SIDECRED_SHUTDOWN_DELAY, else 0; ValueError naming a bad value."""
    if args.shutdown_delay is not None:
        return int(args.shutdown_delay)
    raw = (os.environ if env is None else env).get(SHUTDOWN_DELAY_ENV, "").strip()
    if not raw:
        return 0
    return parse_int_in_range(SHUTDOWN_DELAY_ENV, raw, 0, MAX_SHUTDOWN_DELAY)
