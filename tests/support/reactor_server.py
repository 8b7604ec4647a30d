"""The sidecar's HTTP server on a reactor of its own, run by a thread of the test process."""

from __future__ import annotations

import threading

from sidecred.sidecar.reactor import Reactor
from sidecred.sidecar.server import Handler, HttpServer, Limits


class RunningServer:
    """`HttpServer(handler)` on 127.0.0.1, an ephemeral port; `close()` stops and joins it."""

    def __init__(self, handler: Handler, limits: Limits | None = None) -> None:
        self.reactor = Reactor()
        self.server = HttpServer(handler, "127.0.0.1", 0, limits, self.reactor)
        self.server.start()
        self.port = self.server.port
        self.thread = threading.Thread(target=self.reactor.run, daemon=True)
        self.thread.start()

    @property
    def active(self) -> int:
        return self.server.active

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        def stop() -> None:
            self.server.close()
            self.reactor.stop()

        self.reactor.call_from_thread(stop)
        self.thread.join(10)
        self.reactor.close()
