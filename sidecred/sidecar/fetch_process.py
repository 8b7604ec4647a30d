"""The serving process's credential source: run `sidecred fetch` and read its answer.

TLS, the STS client and the projected service-account token stay in a
short-lived child: the serving process holds only the roles' own credentials
(importing `ssl` alone would cost it about 2 MB of anonymous memory for good).
The child is spawned without `subprocess` (whose imports cost more than this
module); its pipes are read by the serving process's event loop. A child that
hangs is killed after `timeout` seconds; one that crashes is reported; either
way it is reaped, so no zombie is left, and the refresh schedule retries with
backoff.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable

from sidecred.sidecar.credentials import Credentials, SourceError
from sidecred.sidecar.reactor import READ, Reactor, Timer, nonblocking_pipe
from sidecred.sidecar.wire import parse_fetch_error, parse_process_output

FETCH_COMMAND = (sys.executable, "-m", "sidecred.cli", "fetch")
# Above the fetch's own worst case (3 s connect, a proxy tunnel's 3 s more, 10 s
# read; the broker's 15 s) plus interpreter start.
FETCH_TIMEOUT_SECONDS = 40.0
# What is quoted from a crashed child's stderr, and the most read from either pipe.
STDERR_TAIL_CHARS = 300
MAX_OUTPUT_BYTES = 64 * 1024
# How often a child that closed its pipes but has not exited yet is looked at again.
REAP_POLL_SECONDS = 0.01

Outcome = Callable[[Credentials | SourceError], None]


def exit_description(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with status {returncode}"


def read_outcome(
    role_arn: str, returncode: int | None, stdout: bytes, stderr: bytes
) -> Credentials:
    """The child's credentials, or the SourceError it reported (or that describes its end)."""
    if returncode == 0:
        return parse_process_output(stdout, role_arn)
    error = parse_fetch_error(stderr)
    if error is not None:
        raise error
    tail = stderr.decode("utf-8", "replace").strip()[-STDERR_TAIL_CHARS:]
    raise SourceError(
        "FetchProcessFailed",
        f"sidecred fetch {exit_description(returncode or 0)}" + (f": {tail}" if tail else ""),
    )


class FetchProcess:
    """Gets one role's credentials by running `command` (default `sidecred fetch`) in the sidecar's env."""

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

    def start(self, reactor: Reactor, done: Outcome) -> _Run:
        """Spawn the child; `done(credentials or SourceError)` is called once, from the loop."""
        return _Run(self, reactor, done)

    def fetch_blocking(self) -> Credentials:
        """Run the child on a loop of its own until it ends (for tools and tests)."""
        reactor = Reactor()
        outcome: list[Credentials | SourceError] = []

        def done(result: Credentials | SourceError) -> None:
            outcome.append(result)
            reactor.stop()

        try:
            self.start(reactor, done)
            if not outcome:
                reactor.run()
        finally:
            reactor.close()
        if isinstance(outcome[0], SourceError):
            raise outcome[0]
        return outcome[0]


class _Run:
    """One child: its pipes, its timeout and its reaping."""

    def __init__(self, source: FetchProcess, reactor: Reactor, done: Outcome) -> None:
        self.source = source
        self.reactor = reactor
        self.done: Outcome | None = done
        self.pid: int | None = None
        self.returncode: int | None = None
        self.output: dict[int, bytearray] = {}
        self.open_fds: set[int] = set()  # this child's pipes not closed yet
        self.timer: Timer | None = None
        try:
            self._spawn()
        except OSError as exc:
            self._finish(SourceError("FetchProcessFailed", f"cannot start sidecred fetch: {exc}"))
            return
        self.timer = reactor.call_later(source.timeout, self._on_timeout)

    def _spawn(self) -> None:
        out_r, out_w = nonblocking_pipe()
        err_r, err_w = nonblocking_pipe()
        devnull = os.open(os.devnull, os.O_RDONLY)
        try:
            self.pid = os.posix_spawnp(
                self.source.command[0],
                list(self.source.command),
                os.environ,
                file_actions=[
                    (os.POSIX_SPAWN_DUP2, devnull, 0),
                    (os.POSIX_SPAWN_DUP2, out_w, 1),
                    (os.POSIX_SPAWN_DUP2, err_w, 2),
                ],
            )
        except OSError:
            os.close(out_r)
            os.close(err_r)
            raise
        finally:
            for fd in (devnull, out_w, err_w):
                os.close(fd)
        for fd in (out_r, err_r):
            self.output[fd] = bytearray()
            self.open_fds.add(fd)
            self.reactor.watch(fd, READ, self._reader(fd))
        self.stdout_fd, self.stderr_fd = out_r, err_r

    def _reader(self, fd: int) -> Callable[[int], None]:
        return lambda _events: self._on_output(fd)

    def _on_output(self, fd: int) -> None:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        buffer = self.output[fd]
        if data and len(buffer) < MAX_OUTPUT_BYTES:
            buffer += data
            return
        if data:
            return  # over the cap: keep draining, keep nothing more
        self._close_pipe(fd)
        if all(self._closed(fd) for fd in (self.stdout_fd, self.stderr_fd)):
            self._reap()

    def _closed(self, fd: int) -> bool:
        # This run's own record, not the selector's: once closed, the number may be another
        # child's pipe (the lowest free number is reused), and it is not this run's to close.
        return fd not in self.open_fds

    def _close_pipe(self, fd: int) -> None:
        if not self._closed(fd):
            self.open_fds.discard(fd)
            self.reactor.forget(fd)
            os.close(fd)

    def _reap(self) -> None:
        """Both pipes are closed: collect the exit status, looking again shortly if not yet."""
        assert self.pid is not None
        pid, status = os.waitpid(self.pid, os.WNOHANG)
        if pid == 0:
            self.reactor.call_later(REAP_POLL_SECONDS, self._reap_if_running)
            return
        self.returncode = os.waitstatus_to_exitcode(status)
        try:
            result: Credentials | SourceError = read_outcome(
                self.source.role_arn,
                self.returncode,
                bytes(self.output[self.stdout_fd]),
                bytes(self.output[self.stderr_fd]),
            )
        except SourceError as exc:
            result = exc
        self._finish(result)

    def _reap_if_running(self) -> None:
        if self.done is not None:
            self._reap()

    def _on_timeout(self) -> None:
        self._end_child()
        self._finish(
            SourceError(
                "FetchTimeout",
                f"sidecred fetch did not finish within {self.source.timeout:g} s and was killed",
            )
        )

    def kill(self) -> None:
        """Kill and reap the child now, answering nothing (the sidecar is stopping)."""
        self._end_child()
        if self.timer is not None:
            self.timer.cancel()
        self.done = None

    def _end_child(self) -> None:
        if self.pid is not None and self.returncode is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(self.pid, 0)
            self.returncode = -signal.SIGKILL
        for fd in list(self.output):
            self._close_pipe(fd)

    def _finish(self, result: Credentials | SourceError) -> None:
        if self.timer is not None:
            self.timer.cancel()
        done, self.done = self.done, None
        if done is not None:
            done(result)
