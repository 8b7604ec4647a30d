"""The serving process's credential source: run `sidecred fetch` and read its answer.

botocore (two thirds of a sidecar's memory when it lived in the server) and
the projected service-account token stay in a short-lived child: the serving
process holds only the role's own credentials. A child that hangs is killed
after `timeout` seconds; one that crashes is reported; either way it is
reaped, so no zombie is left, and the refresh loop retries with backoff.
"""

from __future__ import annotations

import asyncio
import signal
import sys

from sidecred.sidecar.credentials import Credentials, SourceError
from sidecred.sidecar.wire import parse_fetch_error, parse_process_output

FETCH_COMMAND = (sys.executable, "-m", "sidecred.cli", "fetch")
# Above the fetch's own worst case (botocore: 3 s connect + 10 s read, twice
# for a role-chaining retry) plus interpreter start.
FETCH_TIMEOUT_SECONDS = 40.0
# What is quoted from a crashed child's stderr.
STDERR_TAIL_CHARS = 300


def exit_description(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with status {returncode}"


class FetchProcess:
    """Gets credentials by running `command` (default `sidecred fetch`) in the sidecar's env."""

    def __init__(
        self,
        role_arn: str,
        session_name: str,
        command: tuple[str, ...] = FETCH_COMMAND,
        timeout: float = FETCH_TIMEOUT_SECONDS,
    ) -> None:
        self.role_arn = role_arn
        self.session_name = session_name
        self.command = command
        self.timeout = timeout
        self.last_pid: int | None = None  # for tests: the child that must be gone

    async def fetch(self) -> Credentials:
        try:
            process = await asyncio.create_subprocess_exec(
                *self.command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            raise SourceError("FetchProcessFailed", f"cannot start sidecred fetch: {exc}") from None
        self.last_pid = process.pid
        try:
            stdout, stderr = await asyncio.wait_for(process.communicate(), self.timeout)
        except TimeoutError:
            raise SourceError(
                "FetchTimeout",
                f"sidecred fetch did not finish within {self.timeout:g} s and was killed",
            ) from None
        finally:
            if process.returncode is None:  # timed out, or the refresh task was cancelled
                process.kill()
                await process.wait()
        return self.read_outcome(process.returncode, stdout, stderr)

    def read_outcome(self, returncode: int | None, stdout: bytes, stderr: bytes) -> Credentials:
        if returncode == 0:
            return parse_process_output(stdout, self.role_arn)
        error = parse_fetch_error(stderr)
        if error is not None:
            raise error
        tail = stderr.decode("utf-8", "replace").strip()[-STDERR_TAIL_CHARS:]
        raise SourceError(
            "FetchProcessFailed",
            f"sidecred fetch {exit_description(returncode or 0)}" + (f": {tail}" if tail else ""),
        )
