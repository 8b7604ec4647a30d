"""AssumeRoleWithWebIdentity with the standard library: against moto, and against scripted STSs
that throttle, fail, answer garbage, sit behind a proxy or present a certificate of their own CA.
"""

from __future__ import annotations

import re
import ssl
import urllib.parse
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sidecred.certs.generate import certificate_pem, private_key_pem
from sidecred.sidecar.credentials import Credentials, SourceError
from sidecred.sidecar.sts_client import (
    MAX_ANSWER_BYTES,
    assume_role_with_web_identity,
    request_body,
)
from tests.support.forward_proxy import ForwardProxy
from tests.support.loopback_http import LoopbackServers
from tests.support.scripted_broker import issue_localhost_certificate
from tests.support.scripted_sts import access_denied, error_xml, success_xml

ROLE_ARN = "arn:aws:iam::123456789012:role/reader"
SESSION = "shop.web-0"
TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6c2hvcDp3ZWIifQ.c2ln"

Raw = Callable[[dict[str, str]], tuple[int, str, bytes]]


class RawSts:
    """A loopback STS whose every answer (status, content type, bytes) a test writes."""

    def __init__(self, servers: LoopbackServers, answer: Raw, tls: ssl.SSLContext | None) -> None:
        self.answer = answer
        self.calls: list[dict[str, str]] = []
        self.headers: list[dict[str, str]] = []
        port = servers.start(self._answer, tls)
        self.url = f"{'https://localhost' if tls else 'http://127.0.0.1'}:{port}"

    def _answer(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, str, bytes]:
        self.calls.append(dict(urllib.parse.parse_qsl(body.decode(), keep_blank_values=True)))
        self.headers.append(headers)
        return self.answer(self.calls[-1])


def xml(behaviour: Callable[[dict[str, str]], tuple[int, str]]) -> Raw:
    def answer(params: dict[str, str]) -> tuple[int, str, bytes]:
        status, text = behaviour(params)
        return status, "text/xml", text.encode()

    return answer


OK = xml(lambda p: (200, success_xml(p)))


def bad_expiration(text: str) -> str:
    return re.sub("<Expiration>[^<]*</Expiration>", "<Expiration>soon</Expiration>", text)


@pytest.fixture
def servers() -> Iterator[LoopbackServers]:
    started = LoopbackServers()
    yield started
    started.stop_all()


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, ssl.SSLContext]:
    """(the CA bundle file, a server context for `localhost` signed by that CA)."""
    ca, serving = issue_localhost_certificate()
    (tmp_path / "ca.crt").write_bytes(certificate_pem(ca.certificate))
    (tmp_path / "tls.crt").write_bytes(certificate_pem(serving.certificate))
    (tmp_path / "tls.key").write_bytes(private_key_pem(serving.key))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "tls.crt", tmp_path / "tls.key")
    return tmp_path / "ca.crt", context


@pytest.fixture
def proxy() -> Iterator[ForwardProxy]:
    started = ForwardProxy()
    yield started
    started.close()


def call(env: dict[str, str], region: str | None = None) -> Credentials:
    return assume_role_with_web_identity(env, region, ROLE_ARN, SESSION, TOKEN, 3600)


def failure(env: dict[str, str]) -> SourceError:
    with pytest.raises(SourceError) as err:
        call(env)
    return err.value


def test_moto_answers_the_standard_library_call(moto_sts):
    creds = call({"AWS_ENDPOINT_URL_STS": moto_sts.url})
    assert creds.access_key_id.startswith("ASIA") and creds.secret_access_key
    assert creds.session_token and creds.role_arn == ROLE_ARN
    assert creds.account_id == "123456789012"
    assert creds.expiration.tzinfo is UTC and creds.expiration > datetime.now(UTC)


def test_the_request_is_the_unsigned_form_sts_documents(servers):
    sts = RawSts(servers, OK, None)
    creds = call({"AWS_ENDPOINT_URL_STS": sts.url})
    assert sts.calls == [
        {
            "Action": "AssumeRoleWithWebIdentity",
            "Version": "2011-06-15",
            "RoleArn": ROLE_ARN,
            "RoleSessionName": SESSION,
            "WebIdentityToken": TOKEN,
            "DurationSeconds": "3600",
        }
    ]
    headers = sts.headers[0]
    assert headers["content-type"].startswith("application/x-www-form-urlencoded")
    assert "authorization" not in headers and "x-amz-date" not in headers  # unsigned
    assert creds.access_key_id == "ASIAFAULTSTSKEY00001"
    assert creds.account_id == "123456789012"


def test_policy_and_policy_arns_are_encoded_when_given():
    body = request_body(
        ROLE_ARN, SESSION, TOKEN, 900, policy='{"Version":"2012-10-17"}', policy_arns=["a1", "a2"]
    )
    params = dict(urllib.parse.parse_qsl(body.decode()))
    assert params["Policy"] == '{"Version":"2012-10-17"}'
    assert params["PolicyArns.member.1.arn"] == "a1" and params["PolicyArns.member.2.arn"] == "a2"


@pytest.mark.parametrize(
    ("answer", "code", "words", "refused"),
    [
        (xml(access_denied), "AccessDenied", "Not authorized to perform", True),
        (
            xml(lambda p: (400, error_xml("Throttling", "Rate exceeded"))),
            "Throttling",
            "Rate exceeded",
            False,
        ),
        (
            xml(lambda p: (400, error_xml("IDPCommunicationError", "the OIDC provider timed out"))),
            "IDPCommunicationError",
            "the OIDC provider timed out",
            False,
        ),
        (
            xml(lambda p: (500, error_xml("InternalFailure", "try again"))),
            "InternalFailure",
            "try again",
            False,
        ),
        (
            lambda p: (503, "text/html", b"<html>busy</html>"),
            "StsHttp503",
            "without an error",
            False,
        ),
        (lambda p: (502, "text/plain", b""), "StsHttp502", "STS answered 502", False),
    ],
)
def test_errors_carry_sts_words_and_each_is_one_call(servers, answer, code, words, refused):
    # One call per fetch: the refresh schedule retries, with backoff and a log line each.
    sts = RawSts(servers, answer, None)
    error = failure({"AWS_ENDPOINT_URL_STS": sts.url})
    assert (error.code, error.refused) == (code, refused)
    assert words in error.message
    assert len(sts.calls) == 1


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        (
            lambda p: (200, "text/xml", b"<AssumeRoleWithWebIdentityResponse><unclosed>"),
            "not well-formed",
        ),
        (lambda p: (200, "text/html", b"<html>captive portal</html>"), "content type 'text/html'"),
        (
            lambda p: (200, "text/xml", b"<AssumeRoleWithWebIdentityResponse/>"),
            "lacks AccessKeyId, SecretAccessKey, SessionToken, Expiration",
        ),
        (
            lambda p: (
                200,
                "text/xml",
                b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><x>&a;</x>',
            ),
            "a DTD in the answer",
        ),
        (
            lambda p: (200, "text/xml", b"<x>" + b"a" * MAX_ANSWER_BYTES + b"</x>"),
            "over 65536 bytes",
        ),
        (
            lambda p: (200, "text/xml", bad_expiration(success_xml(p)).encode()),
            "Expiration is not a timestamp",
        ),
    ],
)
def test_answers_that_are_not_credentials_are_named_not_served(servers, answer, words):
    sts = RawSts(servers, answer, None)
    error = failure({"AWS_ENDPOINT_URL_STS": sts.url})
    assert error.code == "StsAnswerInvalid" and not error.refused
    assert words in error.message
    assert "faultSecretKey" not in error.message


def test_nothing_listening_is_unreachable_and_names_the_endpoint():
    from sidecred.dev.processes import free_port

    url = f"http://127.0.0.1:{free_port()}"
    error = failure({"AWS_ENDPOINT_URL_STS": url})
    assert error.code == "StsUnreachable" and f"cannot reach {url}" in error.message


def test_a_custom_ca_bundle_verifies_sts_and_without_it_the_certificate_is_refused(
    servers, tls_files
):
    ca_file, server_tls = tls_files
    sts = RawSts(servers, OK, server_tls)
    creds = call({"AWS_ENDPOINT_URL_STS": sts.url, "AWS_CA_BUNDLE": str(ca_file)})
    assert creds.access_key_id == "ASIAFAULTSTSKEY00001"

    error = failure({"AWS_ENDPOINT_URL_STS": sts.url})  # the system trust store
    assert error.code == "StsCertificateInvalid" and "AWS_CA_BUNDLE" in error.message
    assert len(sts.calls) == 1  # nothing was sent to the unverified server

    error = failure({"AWS_ENDPOINT_URL_STS": sts.url, "AWS_CA_BUNDLE": str(ca_file) + ".missing"})
    assert error.code == "CaBundleInvalid" and ".missing" in error.message


def test_https_goes_through_the_proxy_in_a_connect_tunnel(servers, tls_files, proxy):
    ca_file, server_tls = tls_files
    sts = RawSts(servers, OK, server_tls)
    port = sts.url.rsplit(":", 1)[1]
    authed = proxy.url.replace("http://", "http://user:p%40ss@")
    env = {"AWS_ENDPOINT_URL_STS": sts.url, "AWS_CA_BUNDLE": str(ca_file), "HTTPS_PROXY": authed}
    assert call(env).access_key_id == "ASIAFAULTSTSKEY00001"
    (asked,) = proxy.state.asked
    assert (asked.method, asked.target) == ("CONNECT", f"localhost:{port}")
    assert asked.proxy_authorization == "Basic dXNlcjpwQHNz"  # user:p@ss
    assert len(sts.calls) == 1


def test_plain_http_goes_to_the_proxy_with_the_absolute_url(servers, proxy):
    sts = RawSts(servers, OK, None)
    assert call({"AWS_ENDPOINT_URL_STS": sts.url, "http_proxy": proxy.url}).access_key_id
    (asked,) = proxy.state.asked
    assert (asked.method, asked.target) == ("POST", f"{sts.url}/")


def test_no_proxy_bypasses_the_proxy_and_a_refusing_proxy_is_reported(servers, tls_files, proxy):
    ca_file, server_tls = tls_files
    sts = RawSts(servers, OK, server_tls)
    env = {"AWS_ENDPOINT_URL_STS": sts.url, "AWS_CA_BUNDLE": str(ca_file), "HTTPS_PROXY": proxy.url}
    assert call({**env, "NO_PROXY": "example.com,localhost"}).access_key_id
    assert proxy.state.asked == []

    proxy.state.refuse_with = 407
    error = failure(env)
    assert error.code == "StsUnreachable" and "refused the tunnel (407)" in error.message
    assert len(sts.calls) == 1  # only the bypassing call reached STS
