"""serving.drain: the drain clock and the Connection: close middleware, without a server."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import pytest

from sidecred.serving.cli import add_server_arguments, shutdown_delay
from sidecred.serving.drain import CloseWhileDraining, Drain


def test_drain_is_over_after_its_delay_and_begins_once() -> None:
    now = [100.0]
    drain = Drain(5, clock=lambda: now[0])
    assert not drain.draining and not drain.over()
    drain.begin()
    now[0] = 104.9
    drain.begin()  # a second signal does not restart the delay
    assert drain.draining and not drain.over()
    now[0] = 105.0
    assert drain.over()


def run(drain: Drain) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"a", b"1")]})
        await send({"type": "http.response.body", "body": b"ok"})

    async def receive() -> dict[str, Any]:
        return {"type": "http.request"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(CloseWhileDraining(app, drain)({"type": "http"}, receive, send))
    return sent


def test_responses_close_their_connection_only_while_draining() -> None:
    drain = Drain(5)
    assert run(drain)[0]["headers"] == [(b"a", b"1")]
    drain.begin()
    start, body = run(drain)
    assert start["headers"] == [(b"a", b"1"), (b"connection", b"close")]
    assert body == {"type": "http.response.body", "body": b"ok"}


def test_the_delay_comes_from_the_flag_then_the_env_then_zero() -> None:

    parser = argparse.ArgumentParser()
    add_server_arguments(parser, default_port=8443)
    base = ["--tls-cert", "c", "--tls-key", "k"]
    assert parser.parse_args(base).host == ""  # both address families
    assert shutdown_delay(parser.parse_args(base), {}) == 0
    assert shutdown_delay(parser.parse_args(base), {"SIDECRED_SHUTDOWN_DELAY": "7"}) == 7
    flagged = parser.parse_args([*base, "--shutdown-delay", "3"])
    assert shutdown_delay(flagged, {"SIDECRED_SHUTDOWN_DELAY": "7"}) == 3
    with pytest.raises(ValueError, match="SIDECRED_SHUTDOWN_DELAY"):
        shutdown_delay(parser.parse_args(base), {"SIDECRED_SHUTDOWN_DELAY": "soon"})
