"""Local token verification, pure: tokens as the stub's issuer signs them, and every way to be wrong."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from sidecred.broker.authorise import Caller
from sidecred.broker.jwt_verify import (
    LEEWAY_SECONDS,
    MAX_TOKEN_CHARS,
    UNKNOWN_KEY,
    KeySet,
    Verified,
    key_set_from,
    parse_token,
    verify_token,
)
from sidecred.dev.kube_stub import KubeApiStub
from sidecred.dev.token_review import ISSUER, IssuerKey, TokenAuthority
from sidecred.pods.refusal import Refusal

AUDIENCE = "sidecred-broker"
NOW = 1_800_000_000.0
UID = "7d3c1a0e-0000-4000-8000-000000000001"
RSA_KEY = IssuerKey.generate("RS256")
EC_KEY = IssuerKey.generate("ES256")
KEYS = key_set_from({"issuer": ISSUER}, {"keys": [RSA_KEY.jwk(), EC_KEY.jwk()]})


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(**changes: Any) -> dict[str, Any]:
    """What the API server puts in a pod's projected broker token, with `changes`."""
    base: dict[str, Any] = {
        "aud": [AUDIENCE],
        "exp": int(NOW + 3600),
        "iat": int(NOW),
        "nbf": int(NOW),
        "iss": ISSUER,
        "sub": "system:serviceaccount:shop:web",
        "kubernetes.io": {
            "namespace": "shop",
            "pod": {"name": "web-1", "uid": UID},
            "serviceaccount": {"name": "web", "uid": "sa-uid"},
        },
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def signed(body: dict[str, Any], key: IssuerKey = RSA_KEY, **header: Any) -> str:
    head = {"alg": key.algorithm, "kid": key.kid, **header}
    text = b64(json.dumps({k: v for k, v in head.items() if v is not None}).encode())
    text += "." + b64(json.dumps(body).encode())
    return text + "." + b64(key.sign(text.encode()))


def verify(token: str, keys: KeySet = KEYS, now: float = NOW) -> Verified | Refusal:
    parsed = parse_token(token)
    return parsed if isinstance(parsed, Refusal) else verify_token(parsed, keys, AUDIENCE, now)


def refused(token: str, code: str, *words: str, now: float = NOW) -> None:
    result = verify(token, now=now)
    assert isinstance(result, Refusal), result
    assert (result.status, result.reason) == (401, code), result
    for word in words:
        assert word in result.message, result.message
    assert token not in result.message
    for part in token.split("."):
        assert len(part) < 20 or part not in result.message


@pytest.mark.parametrize("key", [RSA_KEY, EC_KEY], ids=["RS256", "ES256"])
def test_a_token_the_issuer_signed_names_its_pod(key: IssuerKey) -> None:
    result = verify(signed(claims(), key))
    assert result == Verified(Caller("shop", "web", "web-1", UID), NOW + 3600)


def test_the_stubs_tokens_verify_against_its_published_keys() -> None:
    authority = TokenAuthority(KubeApiStub(), clock=lambda: NOW)
    token = authority.issue("shop", "web", "web-1", UID)
    keys = key_set_from({"issuer": ISSUER}, json.loads(authority.jwks(None).body))  # type: ignore[arg-type]
    assert verify(token, keys) == Verified(Caller("shop", "web", "web-1", UID), NOW + 3600)


def test_a_token_without_kid_is_tried_against_every_key() -> None:
    assert isinstance(verify(signed(claims(), EC_KEY, kid=None)), Verified)


def _with_signature(token: str, signature: str) -> str:
    return token.rsplit(".", 1)[0] + "." + signature


def _other_keys_signature(key: IssuerKey) -> str:
    return signed(claims(), IssuerKey.generate(key.algorithm), kid=key.kid)


def head(**fields: Any) -> str:
    return b64(json.dumps(fields).encode())


GOOD = signed(claims())
HEAD, BODY, SIG = GOOD.split(".")


@pytest.mark.parametrize(
    ("token", "code", "words"),
    [
        ("a" * (MAX_TOKEN_CHARS + 1), "InvalidToken", ["more than the 8192"]),
        ("not-a-jwt", "InvalidToken", ["not a JWT"]),
        ("a.b.c.d", "InvalidToken", ["not a JWT"]),
        (f"!!!.{BODY}.{SIG}", "InvalidToken", ["header is not base64url"]),
        (f"{b64(b'nope')}.{BODY}.{SIG}", "InvalidToken", ["header is not JSON"]),
        (f"{b64(b'[1]')}.{BODY}.{SIG}", "InvalidToken", ["header is not a JSON object"]),
        (f"{b64(b'{}')}.{BODY}.{SIG}", "InvalidToken", ["algorithm null"]),
        (f"{head(alg='none')}.{BODY}.", "InvalidToken", ['algorithm "none"']),
        (f"{head(alg='HS256')}.{BODY}.{SIG}", "InvalidToken", ['algorithm "HS256"']),
        (f"{head(alg='RS512')}.{BODY}.{SIG}", "InvalidToken", ['algorithm "RS512"']),
        (signed(claims(), crit=["exp"]), "InvalidToken", ["critical"]),
        (f"{HEAD}.{b64(b'{')}.{SIG}", "InvalidToken", ["payload is not JSON"]),
        (f"{HEAD}.{b64(bytes([0xFF]))}.{SIG}", "InvalidToken", ["payload is not JSON"]),
        (f"{HEAD}.{b64(b'1')}.{SIG}", "InvalidToken", ["payload is not a JSON object"]),
        (f"{HEAD}.{BODY}.@@", "InvalidToken", ["signature is not base64url"]),
        (_with_signature(GOOD, ""), "InvalidToken", ["not base64url"]),
        (_with_signature(GOOD, SIG[:-8]), "InvalidToken", ["does not verify"]),
        (_other_keys_signature(RSA_KEY), "InvalidToken", ["does not verify"]),
        (_other_keys_signature(EC_KEY), "InvalidToken", ["does not verify"]),
        (signed(claims(), kid="not-a-key-of-this-cluster"), UNKNOWN_KEY, ['"not-a-key-of']),
        (signed(claims(), alg="ES256"), "InvalidToken", ["says ES256", "published for RS256"]),
        (signed(claims(), EC_KEY, alg="RS256"), "InvalidToken", ["published for ES256"]),
    ],
    ids=lambda v: v if isinstance(v, str) and len(v) < 24 else None,
)
def test_a_token_that_is_not_signed_by_the_cluster_is_401(
    token: str, code: str, words: list[str]
) -> None:
    refused(token, code, *words)


def test_an_hmac_keyed_with_the_public_key_is_refused() -> None:
    """The classic confusion: HS256 with the RSA public key as the secret."""
    head = b64(json.dumps({"alg": "HS256", "kid": RSA_KEY.kid}).encode()) + "." + BODY
    secret = json.dumps(RSA_KEY.jwk()).encode()
    mac = hmac.new(secret, head.encode(), hashlib.sha256).digest()
    refused(head + "." + b64(mac), "InvalidToken", 'algorithm "HS256"')


@pytest.mark.parametrize(
    ("changes", "code", "words"),
    [
        ({"iss": "https://evil.example"}, "InvalidToken", ['"https://evil.example"', ISSUER]),
        ({"iss": None}, "InvalidToken", ["issuer null"]),
        ({"aud": ["sts.amazonaws.com"]}, "WrongAudience", [f'"{AUDIENCE}"']),
        ({"aud": "sidecred"}, "WrongAudience", ["audiences"]),
        ({"aud": None}, "WrongAudience", ["audiences"]),
        ({"exp": int(NOW - LEEWAY_SECONDS - 1)}, "InvalidToken", ["expired (61 s ago)"]),
        ({"exp": None}, "InvalidToken", ["no exp claim"]),
        ({"exp": "tomorrow"}, "InvalidToken", ["exp claim is not a number"]),
        ({"exp": True}, "InvalidToken", ["exp claim is not a number"]),
        ({"nbf": int(NOW + LEEWAY_SECONDS + 10)}, "InvalidToken", ["not valid yet"]),
        ({"iat": int(NOW + LEEWAY_SECONDS + 10)}, "InvalidToken", ["issued in the future"]),
        ({"sub": "alice"}, "NotAServiceAccount", ['"alice"']),
        ({"sub": "system:serviceaccount:shop"}, "NotAServiceAccount", ["service account"]),
        ({"sub": "system:serviceaccount:other:web"}, "NotAServiceAccount", ["kubernetes.io"]),
        ({"sub": "system:serviceaccount:shop:admin"}, "NotAServiceAccount", ["kubernetes.io"]),
        (
            {"kubernetes.io": {"namespace": "shop", "serviceaccount": {"name": "web"}}},
            "TokenNotBoundToPod",
            ["not bound to a pod"],
        ),
        (
            {
                "kubernetes.io": {
                    "namespace": "shop",
                    "serviceaccount": {"name": "web"},
                    "pod": {"name": "web-1", "uid": 7},
                }
            },
            "TokenNotBoundToPod",
            ["not bound to a pod"],
        ),
        ({"kubernetes.io": "shop"}, "NotAServiceAccount", ["kubernetes.io"]),
    ],
)
def test_a_signed_token_with_wrong_claims_is_401_naming_the_claim(
    changes: dict[str, Any], code: str, words: list[str]
) -> None:
    refused(signed(claims(**changes)), code, *words)


def test_times_hold_within_sixty_seconds_of_leeway() -> None:
    late = signed(claims(exp=int(NOW - LEEWAY_SECONDS + 1)))
    early = signed(claims(nbf=int(NOW + LEEWAY_SECONDS - 1), iat=int(NOW + LEEWAY_SECONDS - 1)))
    assert isinstance(verify(late), Verified)
    assert isinstance(verify(early), Verified)
    assert isinstance(verify(signed(claims(aud=AUDIENCE))), Verified)  # aud may be a string


def _p384_jwk() -> dict[str, Any]:
    point = ec.generate_private_key(ec.SECP384R1()).public_key().public_numbers()
    x, y = (b64(n.to_bytes(48)) for n in (point.x, point.y))
    return {"kty": "EC", "crv": "P-384", "kid": "p384", "x": x, "y": y}


def _rsa_jwk(bits: int) -> dict[str, Any]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return IssuerKey("small", "RS256", private).jwk()


def test_the_key_set_keeps_only_keys_it_can_verify_with() -> None:
    good = RSA_KEY.jwk()
    jwks = {
        "keys": [
            good,
            _rsa_jwk(1024),  # too short
            _p384_jwk(),  # not ES256
            {**EC_KEY.jwk(), "use": "enc"},
            {**EC_KEY.jwk(), "alg": "ES384"},
            {**EC_KEY.jwk(), "kid": None},
            {**EC_KEY.jwk(), "x": 5},
            {**EC_KEY.jwk(), "x": "!!"},
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
            "not an object",
        ]
    }
    keys = key_set_from({"issuer": ISSUER}, jwks)
    assert [key.kid for key in keys.keys] == [good["kid"]]
    assert keys.issuer == ISSUER


@pytest.mark.parametrize(
    ("discovery", "jwks", "problem"),
    [
        ({}, {"keys": []}, "no issuer"),
        ({"issuer": ""}, {"keys": []}, "no issuer"),
        ([], {"keys": []}, "no issuer"),
        ({"issuer": ISSUER}, {}, "no keys list"),
        ({"issuer": ISSUER}, {"keys": {}}, "no keys list"),
    ],
)
def test_documents_that_are_not_the_api_servers_are_refused(
    discovery: Any, jwks: Any, problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        key_set_from(discovery, jwks)
