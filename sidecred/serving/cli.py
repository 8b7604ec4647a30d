"""The command line both servers share: serving flags and JSON-line logging."""

from __future__ import annotations

import argparse
from pathlib import Path

from sidecred.int_range import int_in_range_type
from sidecred.jsonlog import add_log_level_argument, configure_logging

__all__ = ["add_server_arguments", "configure_logging"]


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
