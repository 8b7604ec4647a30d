"""Abuse of the credential endpoint of a real sidecar process.

Fuzzed request heads over raw sockets, token guessing, proxy-header tricks,
oversized requests and what the process listens on. Whatever arrives, the
answer is a well-formed HTTP response or a clean close, credentials go only to
a request carrying the token, and the process keeps serving.
"""

from __future__ import annotations

import _operator
import hmac
import http.client
import json
import os
import random
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sidecred.sidecar import endpoint as endpoint_module
from sidecred.sidecar.cache import CredentialCache
from sidecred.sidecar.credentials import Credentials
from sidecred.sidecar.endpoint import CredentialEndpoint
from sidecred.sidecar.runtime import bind_health_socket
from sidecred.sidecar.server import Request
from tests.hardening.sidecar.raw_http import exchange, parse_responses
from tests.sidecar.sidecar_process import ROLE_ARN, SidecarProcess, sidecar_env, start_sidecar
from tests.support.sts import MotoServer
from tests.support.sts_fault_proxy import create_role_once

TOKEN = "webhook-generated-token-Zm9vYmFyYmF6cXV4"  # token mode env: sidecar_env's value
STATUSES = {200, 400, 401, 403, 404, 405, 408, 413, 431, 503, 505}


@pytest.fixture(scope="module")
def sidecar(
    moto_sts_module: MotoServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SidecarProcess]:
    """One ready sidecar (token mode env) shared by the module; killed at teardown."""
    create_role_once(moto_sts_module)
    tmp = tmp_path_factory.mktemp("abuse")
    env = sidecar_env(tmp, moto_sts_module.url, token_mode="env")
    assert env["SIDECRED_AUTH_TOKEN"] == TOKEN
    proc = start_sidecar(env, tmp / "sidecar.log")
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.stop()


def connection_failures(sidecar: SidecarProcess) -> int:
    """Connections the server's own code failed on (a bug, not a bad request)."""
    return sidecar.log().count('"event":"http_connection_failed"')


def assert_still_serving(sidecar: SidecarProcess, failures_before: int = 0) -> None:
    assert sidecar.process.poll() is None, sidecar.log()
    assert sidecar.credentials(TOKEN)[0] == 200
    assert connection_failures(sidecar) == failures_before, sidecar.log()


def get(port: int, headers: dict[str, str], conn: http.client.HTTPConnection | None = None):
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/v1/credentials", headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        if own:
            conn.close()


# --- fuzzed request heads -------------------------------------------------------
_NAMES = st.one_of(
    st.sampled_from(
        [
            *(b"Authorization", b"authorization", b"AUTHORIZATION", b"aUtHoRiZaTiOn", b"Host"),
            *(b"X-Forwarded-For", b"Forwarded", b"X-Real-IP", b"Content-Length", b"Connection"),
            *(b"Transfer-Encoding", b"Expect", b" Authorization", b"Authorization "),
        ]
    ),
    st.binary(max_size=40),
)
_VALUES = st.one_of(
    st.binary(max_size=120),
    st.sampled_from(
        [
            *(b"", TOKEN.encode(), b"Bearer " + TOKEN.encode(), TOKEN.encode() + b"\x00"),
            *(b"close", b"keep-alive", b"chunked", b"0", b"3", b"\xb2", b"+5", b"-1", b"1" * 30),
            *(b"100-continue", b"127.0.0.1", b"for=127.0.0.1;proto=http", b"169.254.170.2"),
        ]
    ),
    st.builds(lambda n, c: c * n, st.integers(4000, 20000), st.sampled_from([b"a", b"\x00", b" "])),
)
_HEADER = st.tuples(_NAMES, st.sampled_from([b": ", b":", b" : ", b":\t"]), _VALUES)
_REQUEST = st.tuples(
    st.sampled_from(["GET", "GET", "HEAD", "POST", "get", "OPTIONS", "G\x00T", "BREW"]),
    st.one_of(
        st.sampled_from(
            [b"/v1/credentials", b"/v1/credentials?x=1", b"http://evil/v1/credentials"]
        ),
        st.binary(max_size=60),
    ),
    st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1.1\x00", b"HTTX", b""]),
    st.lists(_HEADER, max_size=8),
    st.sampled_from([b"\r\n", b"\n"]),
)


def render(request: tuple) -> bytes:
    method, target, version, headers, eol = request
    lines = [method.encode("latin-1") + b" " + target + b" " + version]
    lines += [name + sep + value for name, sep, value in headers]
    return eol.join(lines) + eol + eol


@pytest.mark.fuzz
@settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(requests=st.lists(_REQUEST, min_size=1, max_size=3))
def test_fuzzed_heads_get_a_well_formed_answer_or_a_clean_close(sidecar, requests):
    payload = b"".join(render(r) for r in requests)  # more than one: pipelined
    failures_before = connection_failures(sidecar)
    result = exchange(sidecar.port, payload)
    if result.reset:
        # Only a head the server refused may be cut off by a reset.
        assert len(payload) > 8192 or not result.data, result
    # CR/LF inside a value may end a head early and start another: more
    # responses than requests is right then.
    responses = parse_responses(result.data, head_sent=b"HEAD" in payload)
    for response in responses:
        assert response.status in STATUSES
        if response.status == 200:
            # Credentials only ever go to a request that carried the token.
            assert TOKEN.encode() in payload
            assert json.loads(response.body)["RoleArn"] == ROLE_ARN
    assert sidecar.process.poll() is None
    assert connection_failures(sidecar) == failures_before


def test_process_survives_a_burst_of_garbage(sidecar):
    """Independent of the fuzz test above: its own burst of random bytes, then a real request."""
    rng = random.Random(20261130)
    failures_before = connection_failures(sidecar)
    for _ in range(200):
        payload = rng.randbytes(rng.randint(1, 2000))
        exchange(sidecar.port, payload)
    assert_still_serving(sidecar, failures_before)


# --- the token --------------------------------------------------------------------
def test_token_is_compared_in_constant_time(monkeypatch):
    # The C compare hmac.compare_digest falls back to without OpenSSL (same contract).
    assert endpoint_module.compare_digest is _operator._compare_digest
    for a, b in [(b"the-token", b"the-token"), (b"the-tokeX", b"the-token"), (b"", b"x")]:
        assert endpoint_module.compare_digest(a, b) == hmac.compare_digest(a, b)
    calls: list[tuple[bytes, bytes]] = []
    real = endpoint_module.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(endpoint_module, "compare_digest", spy)

    cache = CredentialCache(ROLE_ARN)
    now = datetime.now(UTC)
    cache.store(
        Credentials("AKID", "secret", "session", now + timedelta(hours=1), "1", ROLE_ARN), now
    )
    endpoint = CredentialEndpoint(cache, "the-token")

    def ask(authorization: str) -> int:
        request = Request("GET", "/v1/credentials", "HTTP/1.1", {"authorization": authorization})
        return endpoint(request).status

    assert ask("the-tokeX") == 403
    assert ask("the-token") == 200
    assert calls == [(b"the-tokeX", b"the-token"), (b"the-token", b"the-token")]


def test_wrong_tokens_of_every_length_are_refused(sidecar):
    conn = http.client.HTTPConnection("127.0.0.1", sidecar.port, timeout=5)
    wrong = [("x" * n) for n in range(len(TOKEN) + 9)]
    wrong += [TOKEN[:n] for n in range(len(TOKEN))]  # every prefix
    wrong += [TOKEN + "x", "x" + TOKEN, TOKEN.upper(), f"Bearer {TOKEN}", f"{TOKEN}, {TOKEN}"]
    wrong += [TOKEN[:i] + chr(ord(TOKEN[i]) ^ 1) + TOKEN[i + 1 :] for i in range(len(TOKEN))]
    try:
        for value in wrong:
            status, body = get(sidecar.port, {"Authorization": value}, conn)
            assert status == 403, value
            assert json.loads(body)["Code"] == "Forbidden"
        assert get(sidecar.port, {"Authorization": TOKEN}, conn)[0] == 200
    finally:
        conn.close()


def test_duplicate_authorization_headers_are_refused(sidecar):
    for second in (TOKEN, "", "wrong"):
        payload = (
            f"GET /v1/credentials HTTP/1.1\r\nAuthorization: {TOKEN}\r\n"
            f"authorization: {second}\r\n\r\n"
        ).encode()
        (response,) = parse_responses(exchange(sidecar.port, payload).data)
        assert response.status == 403


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Host": "169.254.170.2"},
        {"Host": "localhost"},
        {"X-Forwarded-For": "127.0.0.1"},
        {"X-Real-IP": "127.0.0.1"},
        {"Forwarded": "for=127.0.0.1;host=127.0.0.1;proto=http"},
        {"X-Forwarded-For": "127.0.0.1", "Forwarded": "for=127.0.0.1", "Host": "127.0.0.1"},
        {"X-Aws-Ec2-Metadata-Token": "anything", "X-Original-Authorization": TOKEN},
        {"Proxy-Authorization": TOKEN},
    ],
    ids=lambda h: "+".join(h) or "none",
)
def test_proxy_headers_never_stand_in_for_the_token(sidecar, headers):
    status, body = get(sidecar.port, headers)
    assert status == 401 and json.loads(body)["Code"] == "Unauthorized"
    status, _ = get(sidecar.port, {**headers, "Authorization": "not-the-token"})
    assert status == 403


# --- what is listening ----------------------------------------------------------
def listening_sockets(pid: int) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket in LISTEN state that process `pid` holds."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = set()
    for table, width in (("tcp", 8), ("tcp6", 32)):
        lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state != "0A" or inode not in inodes:  # 0A: LISTEN
                continue
            addr_hex, port_hex = local.split(":")
            assert len(addr_hex) == width
            if width == 8:
                address = socket.inet_ntop(socket.AF_INET, bytes.fromhex(addr_hex)[::-1])
            else:
                words = [bytes.fromhex(addr_hex[i : i + 8])[::-1] for i in range(0, 32, 8)]
                address = socket.inet_ntop(socket.AF_INET6, b"".join(words))
            found.add((address, int(port_hex, 16)))
    return found


def test_credentials_listen_on_loopback_only(sidecar):
    port, health_port = sidecar.port, int(sidecar.env["SIDECRED_HEALTH_PORT"])
    # The kubelet probes the pod IP: IPv4 or IPv6, so dual-stack "::" where the host has IPv6.
    health_host = "::" if socket.has_dualstack_ipv6() else "0.0.0.0"
    assert listening_sockets(sidecar.process.pid) == {
        ("127.0.0.1", port),
        (health_host, health_port),
    }


def status_over(family: socket.AddressFamily, host: str, port: int, path: str) -> int | None:
    """Status of `GET path` from (host, port), or None when the connection is refused."""
    try:
        sock = socket.create_connection((host, port), timeout=5)
    except ConnectionRefusedError:
        return None
    with sock:
        assert sock.family == family
        sock.sendall(f"GET {path} HTTP/1.1\r\nConnection: close\r\n\r\n".encode())
        (response,) = parse_responses(b"".join(iter(lambda: sock.recv(65536), b"")))
        return response.status


@pytest.mark.skipif(not socket.has_dualstack_ipv6(), reason="the host has no IPv6")
def test_health_answers_over_ipv4_and_ipv6_and_credentials_only_on_127_0_0_1(sidecar):
    health_port = int(sidecar.env["SIDECRED_HEALTH_PORT"])
    assert status_over(socket.AF_INET, "127.0.0.1", health_port, "/readyz") == 200
    assert status_over(socket.AF_INET6, "::1", health_port, "/readyz") == 200
    assert status_over(socket.AF_INET6, "::1", sidecar.port, "/v1/credentials") is None


def test_health_socket_is_dual_stack_or_ipv4():
    with bind_health_socket(0, dual_stack=False) as ipv4:
        assert ipv4.family == socket.AF_INET and ipv4.getsockname()[0] == "0.0.0.0"
    if socket.has_dualstack_ipv6():
        with bind_health_socket(0) as both:
            assert both.family == socket.AF_INET6 and both.getsockname()[0] == "::"
            assert both.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 0


def test_health_port_serves_no_secrets(sidecar):
    _, creds = sidecar.credentials(TOKEN)
    secrets = [creds["AccessKeyId"], creds["SecretAccessKey"], creds["Token"], TOKEN]
    health = int(sidecar.env["SIDECRED_HEALTH_PORT"])
    for path in ("/healthz", "/readyz", "/metrics", "/v1/credentials", "/"):
        conn = http.client.HTTPConnection("127.0.0.1", health, timeout=5)
        conn.request("GET", path, headers={"Authorization": TOKEN})
        resp = conn.getresponse()
        body = resp.read().decode()
        conn.close()
        if path in ("/v1/credentials", "/"):
            assert resp.status == 404
        for secret in secrets:
            assert secret not in body, path
            assert secret not in str(resp.headers), path


# --- oversized requests ------------------------------------------------------------
@pytest.mark.parametrize(
    ("payload", "allowed"),
    [
        (b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\n\r\n", {431, 414}),
        (b"GET /v1/credentials HTTP/1.1\r\nX-Big: " + b"b" * 20000 + b"\r\n\r\n", {431}),
        (b"GET /v1/credentials HTTP/1.1\r\n" + b"X-A: b\r\n" * 2000 + b"\r\n", {431}),
        (
            f"GET /v1/credentials HTTP/1.1\r\nAuthorization: {TOKEN}\r\nContent-Length: 100000\r\n\r\n".encode()
            + b"x" * 100000,
            {413},
        ),
        (
            f"POST /v1/credentials HTTP/1.1\r\nAuthorization: {TOKEN}\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
            + b"5\r\nhello\r\n0\r\n\r\n",
            {413},
        ),
        (b"GET /v1/credentials HTTP/1.1\r\nContent-Length: \xb2\r\n\r\n", {400}),
        (b"GET /v1/credentials HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n", {413}),
    ],
    ids=[
        "request-line",
        "one-header",
        "many-headers",
        "body",
        "chunked",
        "odd-digit",
        "huge-length",
    ],
)
def test_oversized_requests_get_4xx_or_close(sidecar, payload, allowed):
    failures_before = connection_failures(sidecar)
    result = exchange(sidecar.port, payload)
    responses = parse_responses(result.data)
    if responses:
        assert [r.status for r in responses] in [[s] for s in allowed]
    else:
        assert result.reset or not result.data  # closed without an answer
    assert_still_serving(sidecar, failures_before)


def test_small_body_is_read_and_ignored(sidecar):
    payload = (
        f"GET /v1/credentials HTTP/1.1\r\nAuthorization: {TOKEN}\r\nContent-Length: 10\r\n\r\n"
        f"0123456789GET /v1/credentials HTTP/1.1\r\nAuthorization: {TOKEN}\r\n\r\n"
    ).encode()
    responses = parse_responses(exchange(sidecar.port, payload).data)
    assert [r.status for r in responses] == [200, 200]
