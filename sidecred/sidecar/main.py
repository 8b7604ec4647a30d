"""`sidecred sidecar`: the per-pod credential server, and its `--wait-ready` probe helper.

Only the standard library and the config contract are imported at module
level, so `--wait-ready` (the container-mode postStart hook) starts fast; the
server's modules are imported when the server runs. botocore never is: it
lives in `sidecred fetch`, a child process at each refresh.
"""

from __future__ import annotations

import os
import sys
import time

from sidecred.jsonlog import ENV_LOG_LEVEL, add_log_level_argument, level_from_env
from sidecred.sidecar.config import ENV_HEALTH_PORT, ConfigError, SidecarConfig, load_config

TYPE_CHECKING = False  # `typing` is not imported: it would cost every pod ~2 MB
if TYPE_CHECKING:
    import argparse

EXIT_CONFIG = 2


def parse_args(argv: list[str]) -> argparse.Namespace:
    # Imported only when there are arguments: the server itself takes none,
    # and argparse would cost every pod's sidecar about half a megabyte.
    import argparse

    parser = argparse.ArgumentParser(
        prog="sidecred sidecar",
        description="Serve this pod's AWS credentials on 127.0.0.1 (all settings from SIDECRED_* env).",
    )
    parser.add_argument(
        "--wait-ready",
        action="store_true",
        help=f"poll http://127.0.0.1:${ENV_HEALTH_PORT}/readyz until ready (exit 0) or timeout (exit 1)",
    )
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="seconds --wait-ready waits (default 120)"
    )
    add_log_level_argument(parser)
    return parser.parse_args(argv)


def _fetch_readyz(url: str) -> tuple[int, str]:
    # Imported here: urllib pulls in http.client and email, which the server never needs.
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 (fixed loopback http URL)
            return resp.status, resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace")
    except OSError as exc:
        return 0, f"health port not answering: {exc}"


def wait_ready(timeout: float, env: dict[str, str] | None = None) -> int:
    """Poll /readyz until 200 (0) or `timeout` seconds pass (1, printing the last body)."""
    env = dict(os.environ) if env is None else env
    port = env.get(ENV_HEALTH_PORT, "").strip()
    if not port.isdigit():
        print(
            f"sidecred sidecar --wait-ready: {ENV_HEALTH_PORT}={port!r} is not a port",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    url = f"http://127.0.0.1:{port}/readyz"
    deadline = time.monotonic() + timeout
    while True:
        status, body = _fetch_readyz(url)
        if status == 200:
            return 0
        if time.monotonic() >= deadline:
            print(
                f"sidecred sidecar: not ready after {timeout:g} s: {body.strip()}", file=sys.stderr
            )
            return 1
        time.sleep(0.2)  # poll interval of a probe loop


def main(argv: list[str]) -> int:
    from sidecred.sidecar import log

    if argv:
        args = parse_args(argv)
        if args.wait_ready:
            return wait_ready(args.timeout)
        # In env too, so the `sidecred fetch` children log at the same level.
        os.environ[ENV_LOG_LEVEL] = args.log_level
    try:
        log.set_level(level_from_env())
    except ValueError as exc:
        log.error("config_invalid", error=f"{ENV_LOG_LEVEL}: {exc}")
        return EXIT_CONFIG
    try:
        config: SidecarConfig = load_config()
    except ConfigError as exc:
        log.error("config_invalid", error=str(exc))
        return EXIT_CONFIG
    from sidecred.sidecar.runtime import run

    return run(config)
