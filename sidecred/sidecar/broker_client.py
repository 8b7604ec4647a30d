"""The broker source: one HTTPS `POST` to `sidecred broker`, standard library only.

Runs in `sidecred fetch`, so the projected token (broker audience) is read
there, fresh each time, and never by the serving process. The broker's
certificate is verified against `SIDECRED_BROKER_CA` (PEM text), hostname
included. Wire contract (sidecred/broker/app.py): no body; 200 with the credentials JSON;
401/403/503 with `{"Code","Message","code","message"}`. A 403 is a refusal
(the role is no longer permitted), reported like STS's AccessDenied.
"""

from __future__ import annotations

import json
import ssl
import urllib.parse

from sidecred.sidecar.config import CREDENTIALS_PATH, SidecarConfig
from sidecred.sidecar.credentials import Credentials, SourceError
from sidecred.sidecar.http_post import ProtocolError, post
from sidecred.sidecar.projected_token import read_projected_token
from sidecred.sidecar.wire import parse_expiration

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

BROKER_CONNECT_TIMEOUT_SECONDS = 5.0
BROKER_TIMEOUT_SECONDS = 15.0
MAX_ANSWER_BYTES = 64 * 1024
_FIELDS = ("AccessKeyId", "SecretAccessKey", "Token", "Expiration")


def broker_endpoint(url: str) -> tuple[str, int, str]:
    """(host, port, path) of the broker's credentials endpoint; `url` is its base URL."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise SourceError("BrokerUrlInvalid", f"{url!r} is not an https:// URL")
    path = parts.path.rstrip("/")
    if not path.endswith(CREDENTIALS_PATH):
        path += CREDENTIALS_PATH
    return parts.hostname, parts.port or 443, path


def read_answer(status: int, body: bytes, role_arn: str) -> Credentials:
    """Credentials from a 200, else the broker's error (a 403 marked as a refusal)."""
    try:
        data: Any = json.loads(body)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise SourceError(f"BrokerHttp{status}", f"the broker answered {status} without JSON")
    if status != 200:
        code = str(data.get("Code") or data.get("code") or f"BrokerHttp{status}")
        message = str(data.get("Message") or data.get("message") or "")
        raise SourceError(code, message, refused=status == 403)
    missing = [name for name in _FIELDS if not isinstance(data.get(name), str)]
    if missing:
        raise SourceError("BrokerAnswerInvalid", f"the broker's answer lacks {', '.join(missing)}")
    try:
        expiration = parse_expiration(data["Expiration"])
    except ValueError:
        raise SourceError(
            "BrokerAnswerInvalid", "the broker's Expiration is not RFC 3339"
        ) from None
    return Credentials(
        access_key_id=data["AccessKeyId"],
        secret_access_key=data["SecretAccessKey"],
        session_token=data["Token"],
        expiration=expiration,
        account_id=str(data.get("AccountId") or ""),
        role_arn=role_arn,
    )


def fetch_from_broker(config: SidecarConfig, container: str | None = None) -> Credentials:
    """POST to the broker with the projected token; its credentials or a SourceError.

    `container`: ask for that container's own role (`?container=<c>`) instead of the pod's.
    """
    host, port, path = broker_endpoint(config.broker_url or "")
    if container is not None:
        path += "?" + urllib.parse.urlencode({"container": container})
    token = read_projected_token(config.broker_token_file or "", "BrokerTokenUnreadable")
    try:
        context = ssl.create_default_context(cadata=config.broker_ca or "")
    except (ssl.SSLError, ValueError) as exc:
        raise SourceError(
            "BrokerCaInvalid", f"SIDECRED_BROKER_CA is not a PEM CA bundle: {exc}"
        ) from None
    try:
        answer = post(
            host,
            port,
            path,
            {"Authorization": f"Bearer {token}"},
            b"",
            tls=context,
            connect_timeout=BROKER_CONNECT_TIMEOUT_SECONDS,
            read_timeout=BROKER_TIMEOUT_SECONDS,
            max_body=MAX_ANSWER_BYTES,
        )
    except ssl.SSLCertVerificationError as exc:
        raise SourceError(
            "BrokerCertificateInvalid",
            f"{config.broker_url} did not present a certificate SIDECRED_BROKER_CA verifies: "
            f"{exc.verify_message}",
        ) from None
    except (OSError, ProtocolError) as exc:
        raise SourceError(
            "BrokerUnreachable", f"cannot get credentials from {config.broker_url}: {exc}"
        ) from None
    body = answer.body
    if len(body) > MAX_ANSWER_BYTES:
        raise SourceError(
            "BrokerAnswerInvalid", f"the broker's answer is over {MAX_ANSWER_BYTES} bytes"
        )
    return read_answer(answer.status, body, config.role_arn)
