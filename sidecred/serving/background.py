"""One daemon thread that runs a server's background work (a periodic refresh, a watch)
until the server stops."""

from __future__ import annotations

import threading
from collections.abc import Callable


class Background:
    """Runs `loop` in a daemon thread named `name`; the loop waits on `stopping` between
    rounds, so `stop()` ends it at its next wait."""

    def __init__(self, name: str, loop: Callable[[], None]) -> None:
        self.name = name
        self._loop = loop
        self.stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        """True while the thread runs (also while a stop() winds it down)."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the thread; again after stop()."""
        self.stopping.clear()
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self.stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
