"""Clients that keep calling a Service while a replica behind it is terminated.

Each client is one thread with one keep-alive HTTPS connection (as the API server
holds to a webhook), calling `call(http)` in a loop and recording every answer
that is not the expected one, and every transport error, as a drop.
"""

from __future__ import annotations

import json
import signal
import ssl
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from sidecred.dev.processes import wait_until
from tests.support.service_proxy import ServiceProxy


@dataclass
class Tally:
    answered: int = 0
    drops: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, drop: str | None) -> None:
        with self.lock:
            if drop is None:
                self.answered += 1
            else:
                self.drops.append(drop)


@dataclass
class CallingClients:
    """`count` threads calling `call` through https://127.0.0.1:`port` until stopped."""

    port: int
    ca_file: str
    call: Callable[[httpx.Client], str | None]  # None when answered as expected, else why not
    count: int = 4
    tally: Tally = field(default_factory=Tally)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(self.count)]
        for thread in self._threads:
            thread.start()

    def _run(self) -> None:
        context = ssl.create_default_context(cafile=self.ca_file)
        with httpx.Client(
            base_url=f"https://127.0.0.1:{self.port}", verify=context, timeout=30.0
        ) as http:
            while not self._stop.is_set():
                try:
                    drop = self.call(http)
                except httpx.HTTPError as exc:
                    drop = f"{type(exc).__name__}: {exc}"
                self.tally.record(drop)

    def stop(self) -> Tally:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)
        return self.tally


def terminate_while_calling(
    proxy: ServiceProxy,
    ca_file: str,
    call: Callable[[httpx.Client], str | None],
    victim: subprocess.Popen[bytes],
    after: int = 40,
) -> tuple[Tally, int]:
    """Keep clients calling through `proxy` and SIGTERM `victim` once 40 calls are answered.

    Returns the clients' tally, stopped `after` answers past the victim's exit, and
    how many had been answered when it exited.
    """
    wait_until(lambda: all(b.ready for b in proxy.backends), timeout=30, what="all ready")
    clients = CallingClients(proxy.port, ca_file, call)
    try:
        wait_until(lambda: clients.tally.answered >= 40, timeout=60, what="calls flowing")
        victim.send_signal(signal.SIGTERM)
        wait_until(lambda: victim.poll() is not None, timeout=60, what="replica exit")
        at_exit = clients.tally.answered
        wait_until(lambda: clients.tally.answered >= at_exit + after, timeout=60, what="more")
    finally:
        tally = clients.stop()
    return tally, at_exit


def answered_while_draining(log: str, answer: str) -> int:
    """How many `answer` events a server's JSON log holds between its signal and its stop."""
    seen = [json.loads(line)["event"] for line in log.splitlines() if line.startswith("{")]
    start, end = seen.index("draining"), seen.index("drained: stopping")
    return seen[start:end].count(answer)
