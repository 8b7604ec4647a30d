"""A small event loop on `selectors`: file readiness, timers and signals, in one thread.

The serving process needs only this much of an event loop: two listeners, their
connections, a few timers and a child process's pipes. `asyncio` would do it
too, but importing it costs every pod's sidecar about 6 MB of anonymous memory
(about half of the whole process), and measured on the credential endpoint
this loop serves as fast (see bench/RESULTS.md).
"""

from __future__ import annotations

import heapq
import os
import selectors
import signal
import socket
import time
from collections.abc import Callable

READ = selectors.EVENT_READ
WRITE = selectors.EVENT_WRITE
Callback = Callable[[], None]
# Written to the wake-up socket by another thread (signal numbers are never 0).
_FROM_THREAD = b"\0"


class Timer:
    """A scheduled call; `cancel()` before it runs makes it a no-op."""

    __slots__ = ("callback", "when")

    def __init__(self, when: float, callback: Callback | None) -> None:
        self.when = when
        self.callback = callback

    def cancel(self) -> None:
        self.callback = None

    def __lt__(self, other: Timer) -> bool:
        return self.when < other.when


class Reactor:
    """Runs callbacks when their file is ready or their time has come, until `stop()`."""

    def __init__(self) -> None:
        self.selector = selectors.DefaultSelector()
        self._timers: list[Timer] = []
        self._running = False
        self._wakeup: tuple[socket.socket, socket.socket] | None = None
        self._signals: dict[int, Callable[[int], None]] = {}
        self._previous_handlers: dict[int, object] = {}
        self._from_threads: list[Callback] = []

    @staticmethod
    def time() -> float:
        return time.monotonic()

    # --- timers ---------------------------------------------------------------------
    def call_at(self, when: float, callback: Callback) -> Timer:
        timer = Timer(when, callback)
        heapq.heappush(self._timers, timer)
        return timer

    def call_later(self, delay: float, callback: Callback) -> Timer:
        return self.call_at(self.time() + delay, callback)

    # --- files ------------------------------------------------------------------------
    def watch(
        self, fileobj: socket.socket | int, events: int, callback: Callable[[int], None]
    ) -> None:
        """Call `callback(ready_events)` when `fileobj` is ready for `events` (0: stop watching)."""
        key = self.selector.get_map().get(fileobj)
        if key is None:
            if events:
                self.selector.register(fileobj, events, callback)
        elif events:
            if key.events != events or key.data is not callback:
                self.selector.modify(fileobj, events, callback)
        else:
            self.selector.unregister(fileobj)

    def forget(self, fileobj: socket.socket | int) -> None:
        if fileobj in self.selector.get_map():
            self.selector.unregister(fileobj)

    # --- signals and other threads ----------------------------------------------------
    def on_signal(self, signum: int, callback: Callable[[int], None]) -> None:
        """Run `callback(signum)` from the loop (not from the signal handler) when it arrives."""
        writer = self._wakeup_writer()
        if not self._signals:
            signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
        self._signals[signum] = callback
        previous = signal.signal(signum, lambda *_: None)
        self._previous_handlers.setdefault(
            signum, previous
        )  # the wakeup fd carries the signal number

    def call_from_thread(self, callback: Callback) -> None:
        """Run `callback` on the loop soon; the one method another thread may call."""
        writer = self._wakeup_writer()
        self._from_threads.append(callback)
        try:
            writer.send(_FROM_THREAD)
        except BlockingIOError:
            pass  # the loop has a wake-up pending already

    def _wakeup_writer(self) -> socket.socket:
        if self._wakeup is None:
            reader, writer = socket.socketpair()
            reader.setblocking(False)
            writer.setblocking(False)
            self._wakeup = (reader, writer)
            self.watch(reader, READ, self._on_wakeup)
        return self._wakeup[1]

    def _on_wakeup(self, _events: int) -> None:
        assert self._wakeup is not None
        try:
            data = self._wakeup[0].recv(256)
        except (BlockingIOError, InterruptedError):
            return
        for signum in data:
            callback = self._signals.get(signum)
            if callback is not None:
                callback(signum)
        while self._from_threads:
            self._from_threads.pop(0)()

    # --- running ----------------------------------------------------------------------
    def run(self) -> None:
        self._running = True
        timers = self._timers
        select = self.selector.select
        while self._running:
            timeout = None
            if timers:
                timeout = max(0.0, timers[0].when - self.time())
            for key, events in select(timeout):
                key.data(events)
            now = self.time()
            while timers and timers[0].when <= now:
                callback = heapq.heappop(timers).callback
                if callback is not None:
                    callback()

    def stop(self) -> None:
        self._running = False

    def close(self) -> None:
        if self._signals:
            signal.set_wakeup_fd(-1)
            for signum, previous in self._previous_handlers.items():
                signal.signal(signum, previous)  # type: ignore[arg-type]
            self._signals.clear()
            self._previous_handlers.clear()
        if self._wakeup is not None:
            for sock in self._wakeup:
                sock.close()
            self._wakeup = None
        self.selector.close()


def nonblocking_pipe() -> tuple[int, int]:
    """A pipe whose read end does not block (the loop reads it); neither end is inherited."""
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    return read_fd, write_fd
