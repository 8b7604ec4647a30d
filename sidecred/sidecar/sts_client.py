"""`sts:AssumeRoleWithWebIdentity` with the standard library: an unsigned POST answered in XML.

No SDK: the call needs no signature (the projected token is the proof), so it
is one form-encoded POST to the STS endpoint (`sts_endpoint.py` resolves it,
the proxy and the CA bundle) and a small XML answer, with connect and read
timeouts. Each fetch makes exactly one call: retries (throttling,
`IDPCommunicationError`, 5xx, connection errors, and every other failure) are
the refresh schedule's, with capped, jittered backoff and a log line each, so a
throttled STS never gets more calls than the schedule allows.

Runs in `sidecred fetch` (a short-lived child of the serving process), so the
serving process never loads TLS or the projected token.
"""

from __future__ import annotations

import base64
import socket
import ssl
from datetime import UTC, datetime
from urllib.parse import unquote, urlencode
from xml.parsers import expat

from sidecred.sidecar.credentials import Credentials, SourceError, account_from_arn
from sidecred.sidecar.http_post import Answer, ProtocolError, Tunnel, authority, post
from sidecred.sidecar.sts_endpoint import (
    EndpointError,
    ca_bundle,
    proxy_for,
    split_url,
    sts_endpoint,
)

API_VERSION = "2011-06-15"
CONNECT_TIMEOUT = 3.0
READ_TIMEOUT = 10.0
MAX_ANSWER_BYTES = 64 * 1024
USER_AGENT = "sidecred"

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence


def request_body(
    role_arn: str,
    session_name: str,
    token: str,
    duration: int,
    *,
    policy: str | None = None,
    policy_arns: Sequence[str] = (),
) -> bytes:
    """The form-encoded AssumeRoleWithWebIdentity request."""
    params = [
        ("Action", "AssumeRoleWithWebIdentity"),
        ("Version", API_VERSION),
        ("RoleArn", role_arn),
        ("RoleSessionName", session_name),
        ("WebIdentityToken", token),
        ("DurationSeconds", str(duration)),
    ]
    if policy:
        params.append(("Policy", policy))
    params += [(f"PolicyArns.member.{n}.arn", arn) for n, arn in enumerate(policy_arns, 1)]
    return urlencode(params).encode()


# --- the XML answer -----------------------------------------------------------------
def xml_fields(body: bytes) -> dict[str, str]:
    """Text of every element by its path of local names (`A/B/C`); ValueError if not XML.

    Namespaces are dropped: STS answers in its own namespace, errors sometimes in none.
    """
    fields: dict[str, str] = {}
    path: list[str] = []
    text: list[str] = []

    def start(name: str, _attrs: object) -> None:
        path.append(name.rpartition("}")[2].rpartition(":")[2])
        text.clear()

    def end(_name: str) -> None:
        fields.setdefault("/".join(path), "".join(text).strip())
        path.pop()
        text.clear()

    parser = expat.ParserCreate()
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = text.append
    # No DTDs: a hostile answer gets no entity expansion.
    parser.StartDoctypeDeclHandler = _refuse_doctype
    try:
        parser.Parse(body, True)
    except expat.ExpatError as exc:
        raise ValueError(f"not well-formed XML ({exc})") from None
    return fields


def _refuse_doctype(*_args: object) -> None:
    raise ValueError("a DTD in the answer")


def parse_error(status: int, body: bytes) -> SourceError:
    """STS's own code and message from `ErrorResponse/Error`, or a description of the answer."""
    try:
        fields = xml_fields(body)
    except ValueError:
        fields = {}
    code = fields.get("ErrorResponse/Error/Code") or fields.get("Error/Code")
    message = fields.get("ErrorResponse/Error/Message") or fields.get("Error/Message") or ""
    if not code:
        return SourceError(f"StsHttp{status}", f"STS answered {status} without an error")
    return SourceError(code, message, refused=status == 403)


def parse_success(body: bytes, role_arn: str) -> Credentials:
    """The credentials in an AssumeRoleWithWebIdentity answer; SourceError if it holds none."""
    try:
        fields = xml_fields(body)
    except ValueError as exc:
        raise SourceError("StsAnswerInvalid", f"STS answered 200 with {exc}") from None
    prefix = "AssumeRoleWithWebIdentityResponse/AssumeRoleWithWebIdentityResult/"
    names = ("AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration")
    values = [fields.get(f"{prefix}Credentials/{name}", "") for name in names]
    missing = [name for name, value in zip(names, values, strict=True) if not value]
    if missing:
        raise SourceError("StsAnswerInvalid", f"STS's answer lacks {', '.join(missing)}")
    try:
        expiration = datetime.fromisoformat(values[3].replace("Z", "+00:00"))
    except ValueError:
        raise SourceError("StsAnswerInvalid", "STS's Expiration is not a timestamp") from None
    if expiration.tzinfo is None:
        expiration = expiration.replace(tzinfo=UTC)
    assumed = fields.get(f"{prefix}AssumedRoleUser/Arn", "")
    return Credentials(
        access_key_id=values[0],
        secret_access_key=values[1],
        session_token=values[2],
        expiration=expiration.astimezone(UTC),
        account_id=account_from_arn(assumed) or account_from_arn(role_arn),
        role_arn=role_arn,
    )


def is_xml(content_type: str | None) -> bool:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media in ("text/xml", "application/xml") or media.endswith("+xml")


# --- one HTTP exchange ----------------------------------------------------------------
class Transport:
    """How to reach one STS endpoint: its address, the proxy (if any) and TLS settings."""

    def __init__(self, env: Mapping[str, str], endpoint: str) -> None:
        self.endpoint = endpoint
        self.scheme, self.host, self.port, self.path = split_url(endpoint)
        self.proxy = proxy_for(env, self.scheme, self.host)
        self.cafile = ca_bundle(env)
        self._context: ssl.SSLContext | None = None

    def context(self) -> ssl.SSLContext:
        if self._context is None:
            try:
                self._context = ssl.create_default_context(cafile=self.cafile)
            except (OSError, ssl.SSLError) as exc:
                raise SourceError(
                    "CaBundleInvalid", f"AWS_CA_BUNDLE={self.cafile!r} cannot be loaded: {exc}"
                ) from None
        return self._context

    def post(self, body: bytes) -> Answer:
        """One POST; OSError or ProtocolError on failure."""
        tls = self.context() if self.scheme == "https" else None
        headers = {
            "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
            "Accept": "text/xml",
            "User-Agent": USER_AGENT,
        }
        target, tunnel, via = self.path, None, None
        if self.proxy is not None:
            _, proxy_host, proxy_port, _ = split_url(self.proxy)
            auth = _proxy_authorization(self.proxy)
            if tls is None:  # plain HTTP through the proxy: the absolute URL as the target
                via = (proxy_host, proxy_port)
                target = f"http://{authority(self.host, self.port)}{self.path}"
                headers.update(auth)
            else:  # HTTPS through the proxy: a CONNECT tunnel, then TLS to STS inside it
                tunnel = Tunnel(proxy_host, proxy_port, auth)
        return post(
            self.host,
            self.port,
            target,
            headers,
            body,
            tls=tls,
            connect_timeout=CONNECT_TIMEOUT,
            read_timeout=READ_TIMEOUT,
            max_body=MAX_ANSWER_BYTES,
            tunnel=tunnel,
            via=via,
        )


def _proxy_authorization(proxy: str) -> dict[str, str]:
    """Basic credentials from the proxy URL's userinfo, if it has any."""
    userinfo = proxy.partition("://")[2].partition("/")[0].rpartition("@")[0]
    if not userinfo:
        return {}
    raw = unquote(userinfo).encode()
    return {"Proxy-Authorization": "Basic " + base64.b64encode(raw).decode()}


def describe_failure(exc: BaseException, endpoint: str) -> SourceError:
    """A connection-level failure in an operator's words."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return SourceError(
            "StsCertificateInvalid",
            f"{endpoint} did not present a certificate the trust store "
            f"(AWS_CA_BUNDLE or the system's) verifies: {exc.verify_message}",
        )
    if isinstance(exc, socket.timeout | TimeoutError):
        return SourceError(
            "StsTimeout", f"no answer from {endpoint} in time ({exc or 'timed out'})"
        )
    return SourceError("StsUnreachable", f"cannot reach {endpoint}: {exc}")


def call_once(transport: Transport, body: bytes, role_arn: str) -> Credentials:
    """One POST; the credentials, or a SourceError in STS's words (or the failure's)."""
    try:
        answer = transport.post(body)
    except (OSError, ProtocolError) as exc:
        raise describe_failure(exc, transport.endpoint) from None
    status, content_type, data = answer.status, answer.headers.get("content-type"), answer.body
    if len(data) > MAX_ANSWER_BYTES:
        raise SourceError("StsAnswerInvalid", f"STS's answer is over {MAX_ANSWER_BYTES} bytes")
    if status != 200:
        raise parse_error(status, data)
    if not is_xml(content_type):
        raise SourceError(
            "StsAnswerInvalid",
            f"{transport.endpoint} answered 200 with content type {content_type!r}, not XML "
            "(a proxy or captive portal in the way?)",
        )
    return parse_success(data, role_arn)


def assume_role_with_web_identity(
    env: Mapping[str, str],
    region: str | None,
    role_arn: str,
    session_name: str,
    token: str,
    duration: int,
) -> Credentials:
    """Call STS once; the credentials, or a SourceError."""
    try:
        transport = Transport(env, sts_endpoint(env, region))
    except EndpointError as exc:
        raise SourceError("StsEndpointInvalid", str(exc)) from None
    return call_once(transport, request_body(role_arn, session_name, token, duration), role_arn)
