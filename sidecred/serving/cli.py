"""The command line both servers share: serving flags and JSON-line logging."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from sidecred.int_range import int_in_range_type
from sidecred.jsonlog import format_line


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


def configure_logging(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLineFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True


def add_server_arguments(parser: argparse.ArgumentParser, default_port: int) -> None:
    """--tls-cert, --tls-key, --port, --host and --kubeconfig."""
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
