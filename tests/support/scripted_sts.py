"""A scripted STS: a tiny STS-speaking HTTP server on loopback whose answers a test chooses.

moto accepts everything; this one can refuse (AccessDenied), enforce the
role-chaining duration limit, or answer normally, and records every call.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from tests.support.loopback_http import LoopbackServers, PostAnswer

_NS = "https://sts.amazonaws.com/doc/2011-06-15/"
Behaviour = Callable[[dict[str, str]], tuple[int, str]]


def error_xml(code: str, message: str) -> str:
    return (
        f'<ErrorResponse xmlns="{_NS}"><Error><Type>Sender</Type><Code>{code}</Code>'
        f"<Message>{message}</Message></Error><RequestId>fault-1</RequestId></ErrorResponse>"
    )


def success_xml(params: dict[str, str], *, issued: datetime | None = None) -> str:
    """A well-formed AssumeRole / AssumeRoleWithWebIdentity answer for `params`."""
    action = params["Action"]
    issued = issued or datetime.now(UTC)
    expires = issued + timedelta(seconds=int(params.get("DurationSeconds", "3600")))
    role_name = params["RoleArn"].rsplit("/", 1)[-1]
    account = params["RoleArn"].split(":")[4]
    session = params["RoleSessionName"]
    return (
        f'<{action}Response xmlns="{_NS}"><{action}Result>'
        "<Credentials><AccessKeyId>ASIAFAULTSTSKEY00001</AccessKeyId>"
        "<SecretAccessKey>faultSecretKey0000000000000000000000001</SecretAccessKey>"
        "<SessionToken>faultSessionToken0001</SessionToken>"
        f"<Expiration>{expires.strftime('%Y-%m-%dT%H:%M:%SZ')}</Expiration></Credentials>"
        f"<AssumedRoleUser><Arn>arn:aws:sts::{account}:assumed-role/{role_name}/{session}</Arn>"
        f"<AssumedRoleId>AROAFAULT:{session}</AssumedRoleId></AssumedRoleUser>"
        f"</{action}Result><ResponseMetadata><RequestId>fault-2</RequestId></ResponseMetadata>"
        f"</{action}Response>"
    )


def access_denied(params: dict[str, str]) -> tuple[int, str]:
    return 403, error_xml(
        "AccessDenied", "Not authorized to perform sts:AssumeRoleWithWebIdentity (fault-injected)"
    )


def role_chaining_limit(params: dict[str, str]) -> tuple[int, str]:
    """Like STS when the caller's credentials are themselves a role session."""
    if int(params.get("DurationSeconds", "3600")) > 3600:
        return 400, error_xml(
            "ValidationError",
            "The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by role chaining.",
        )
    return 200, success_xml(params)


@dataclass
class ScriptedSts:
    url: str
    behaviour: Behaviour
    calls: list[dict[str, str]] = field(default_factory=list)


def _answer(state: ScriptedSts) -> PostAnswer:
    def answer(path: str, headers: dict[str, str], body: bytes) -> tuple[int, str, bytes]:
        params = dict(urllib.parse.parse_qsl(body.decode(), keep_blank_values=True))
        state.calls.append(params)
        status, xml = state.behaviour(params)
        return status, "text/xml", xml.encode()

    return answer


@pytest.fixture
def scripted_sts_factory() -> Iterator[Callable[[Behaviour], ScriptedSts]]:
    servers = LoopbackServers()

    def start(behaviour: Behaviour) -> ScriptedSts:
        state = ScriptedSts(url="", behaviour=behaviour)
        state.url = f"http://127.0.0.1:{servers.start(_answer(state))}"
        return state

    yield start
    servers.stop_all()
