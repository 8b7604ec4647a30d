"""Small helpers for running local processes: free ports, polling, stopping.

Shared by the demo, the local pod runner, the tests and the benchmarks, which
all start real servers on 127.0.0.1.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable

# Pause between polls of a condition; every wait is bounded by a deadline.
POLL_SECONDS = 0.02


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ProcessExited(AssertionError):
    """The process a wait depended on exited before the condition held."""

    def __init__(self, what: str, returncode: int) -> None:
        super().__init__(f"{what} exited with code {returncode}")
        self.returncode = returncode


def wait_until(
    predicate: Callable[[], object],
    timeout: float = 10.0,
    what: str = "",
    interval: float = POLL_SECONDS,
    process: subprocess.Popen[bytes] | None = None,
) -> None:
    """Poll `predicate` every `interval` seconds until it is truthy.

    Raises AssertionError after `timeout` seconds, and ProcessExited at once if
    `process` (the server being waited for) exits first.
    """
    deadline = time.monotonic() + timeout
    while True:
        if process is not None and process.poll() is not None:
            raise ProcessExited(what or "the process", process.returncode)
        if predicate():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what or predicate}")
        time.sleep(interval)


def stop_process(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `timeout` seconds (idempotent)."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)
