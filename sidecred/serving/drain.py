"""Stopping without dropping a request: the webhook's and the broker's answer to SIGTERM.

A pod being replaced stays in its Service's endpoints for a moment, and clients
(the API server) keep their open connections to it. So on the first SIGTERM
(or SIGINT) the server does not stop at once: `/readyz` answers 503, every
response closes its connection (`Connection: close`, so the client reconnects,
through the Service, to another replica), and only after `--shutdown-delay`
seconds does it stop accepting and finish what is in flight. A second signal
stops it at once. In the chart a `preStop` sleep comes first (the endpoints
controller drops a terminating pod meanwhile), and terminationGracePeriodSeconds
covers both delays and the in-flight finish.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from types import FrameType
from typing import Any

import uvicorn

log = logging.getLogger("sidecred.serving")
DRAINING = "shutting down: draining connections before stopping"

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Message, Receive, Send], Awaitable[None]]


class Drain:
    """Whether the server is draining, and whether its delay has passed. Clock injected."""

    def __init__(self, delay: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.delay = delay
        self._clock = clock
        self._started: float | None = None

    @property
    def draining(self) -> bool:
        return self._started is not None

    def begin(self) -> None:
        if self._started is None:
            self._started = self._clock()

    def over(self) -> bool:
        return self._started is not None and self._clock() - self._started >= self.delay


class CloseWhileDraining:
    """ASGI middleware: while draining, every response carries `Connection: close`."""

    def __init__(self, app: ASGIApp, drain: Drain) -> None:
        self.app = app
        self.drain = drain

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.drain.draining:
            await self.app(scope, receive, send)
            return

        async def send_closing(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", []), (b"connection", b"close")]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_closing)


class DrainingServer(uvicorn.Server):
    """uvicorn's server, stopping `drain.delay` seconds after the first signal, at once after a second."""

    def __init__(self, config: uvicorn.Config, drain: Drain) -> None:
        super().__init__(config)
        self.drain = drain
        self._pending: int | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.drain.draining or self.drain.delay <= 0:
            self.drain.begin()
            self._pending = None
            super().handle_exit(sig, frame)
            return
        self.drain.begin()
        self._pending = sig
        log.info("draining", extra={"fields": {"signal": sig, "delay_seconds": self.drain.delay}})

    async def on_tick(self, counter: int) -> bool:
        if self._pending is not None and self.drain.over():
            signal, self._pending = self._pending, None
            log.info("drained: stopping", extra={"fields": {"delay_seconds": self.drain.delay}})
            super().handle_exit(signal, None)  # re-raised after shutdown, as uvicorn does
        return await super().on_tick(counter)
