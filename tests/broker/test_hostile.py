"""Any pod can reach the broker: hostile callers get 4xx, never a 500, and the broker stays up."""

from __future__ import annotations

import base64
import json
import random
import socket
import ssl
import string

import pytest

from .broker_process import BROKER_HOST, SNI
from .conftest import Cluster

pytestmark = pytest.mark.slow

SLOW_CLIENT_WAIT_SECONDS = 60  # bound on waiting for the broker to drop a stalled client


def tls_socket(cluster: Cluster) -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=str(cluster.broker.cert_dir / "ca.crt"))
    raw = socket.create_connection(("127.0.0.1", cluster.broker.port), timeout=10)
    return context.wrap_socket(raw, server_hostname=BROKER_HOST)


def garbage_tokens(rng: random.Random) -> list[str]:
    alphabet = string.ascii_letters + string.digits + "-_."
    jwt_like = [
        ".".join(
            base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode()
            for part in ({"alg": "none"}, {"exp": rng.randrange(10**10), "sub": "x"}, {"s": i})
        )
        for i in range(20)
    ]
    shapes = [
        "".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 400))) for _ in range(60)
    ]
    return jwt_like + shapes + ["a.b.c", "..", "ey.ey.ey", "\u00e9.\u00e9.\u00e9", ". . ."]


def test_garbage_tokens_are_401_and_cost_no_reviews(cluster: Cluster) -> None:
    tokens = garbage_tokens(random.Random(12))
    reviews = cluster.stub.requests["tokenreviews.create"]
    with cluster.broker.client() as http:
        for token in tokens + tokens:  # and the same bad tokens again
            response = http.post(
                "/v1/credentials",
                headers={"Authorization": f"Bearer {token}".encode()},
                extensions=SNI,
            )
            assert response.status_code == 401, (token, response.text)
            assert response.json()["code"] in ("InvalidToken", "MissingToken")
    assert cluster.stub.requests["tokenreviews.create"] == reviews


def test_odd_requests_get_4xx(cluster: Cluster) -> None:
    _, token = cluster.add_pod()
    with cluster.broker.client() as http:
        assert http.get("/v1/credentials", extensions=SNI).status_code == 405
        assert http.get("/nothing", extensions=SNI).status_code == 404
        # A body is never read: the role comes from the pod, whatever the caller sends.
        response = http.post(
            "/v1/credentials",
            headers={"Authorization": f"Bearer {token}"},
            content=json.dumps({"RoleArn": "arn:aws:iam::123456789012:role/admin"}) * 1000,
            extensions=SNI,
        )
        assert response.status_code == 200
        assert response.json()["RoleArn"].endswith(":role/shop-reader")
        bad_header = http.post(
            "/v1/credentials",
            headers={"Authorization": "Bearer \u00ff.\u00ff.\u00ff".encode("latin-1")},
            extensions=SNI,
        )
        assert bad_header.status_code == 401


def test_a_huge_header_is_refused_with_400(cluster: Cluster) -> None:
    """A head still growing past the 16 KiB cap is answered 400 and the connection closed."""
    with tls_socket(cluster) as sock:
        # 20 KiB: over the cap, and small enough to be buffered before the answer comes.
        sock.sendall(
            b"POST /v1/credentials HTTP/1.1\r\nHost: broker\r\nAuthorization: Bearer "
            + b"a" * (20 * 1024)
        )
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    assert cluster.broker.ready()


def test_a_stalled_client_is_dropped_while_others_are_served(cluster: Cluster) -> None:
    _, token = cluster.add_pod()
    with tls_socket(cluster) as slow:
        slow.sendall(b"POST /v1/credentials HTTP/1.1\r\nHost: broker\r\nAuthor")
        assert cluster.broker.issue(token).status_code == 200
        slow.settimeout(SLOW_CLIENT_WAIT_SECONDS)
        try:
            closed_by_server = slow.recv(1024) == b""
        except ConnectionResetError:
            closed_by_server = True
    assert closed_by_server


def test_no_answer_was_a_500(cluster: Cluster) -> None:
    """Run last in this module: the broker's own count of answers by result."""
    text = ""
    with cluster.broker.client() as http:
        text = http.get("/metrics", extensions=SNI).text
    assert 'result="InternalError"' not in text
    assert cluster.broker.ready()
    assert "Traceback" not in cluster.broker.log()
