"""A scripted STS: a tiny STS-speaking HTTP server on loopback whose answers a test chooses.

moto accepts everything; this one can refuse (AccessDenied), enforce the
role-chaining duration limit, or answer normally, and records every call.
"""

from __future__ import annotations

import threading
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

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


def _handler(state: ScriptedSts) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length).decode()
            params = dict(urllib.parse.parse_qsl(body, keep_blank_values=True))
            state.calls.append(params)
            status, xml = state.behaviour(params)
            data = xml.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/xml")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@pytest.fixture
def scripted_sts_factory() -> Iterator[Callable[[Behaviour], ScriptedSts]]:
    servers: list[ThreadingHTTPServer] = []

    def start(behaviour: Behaviour) -> ScriptedSts:
        state = ScriptedSts(url="", behaviour=behaviour)
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
        state.url = f"http://127.0.0.1:{server.server_address[1]}"
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return state

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()
