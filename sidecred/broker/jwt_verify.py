"""A service-account token verified locally, as the API server's own authenticator does. Pure.

A token is a compact JWS: `header.payload.signature`, each part base64url. It
is accepted only if it is signed (RS256 or ES256, the algorithm its key was
published for, never `none` or an HMAC) by a key from the cluster's JWKS, its
`iss` is the cluster's issuer, its `aud` holds the broker audience, `exp` and
`nbf` hold within the leeway, and its `kubernetes.io` claims name a pod (name,
uid) and a service account. The pod binding itself (that pod exists with that
uid) is checked afterwards against the broker's pod cache.

Every refusal is a 401 whose message names the problem and never repeats the
token. Nothing here makes a call: a token that fails costs the API server nothing.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from sidecred.broker.authorise import Caller
from sidecred.pods.refusal import Refusal

# A kubelet's projected token is about 1 KB; anything far larger is not one, and is
# refused before a byte of it is decoded (a head over 16 KiB never reaches here: 400).
MAX_TOKEN_CHARS = 8 * 1024
# Clock skew allowed between the API server and the broker on `exp`, `nbf` and `iat`.
LEEWAY_SECONDS = 60.0
SA_PREFIX = "system:serviceaccount:"
# The algorithms a Kubernetes issuer signs with that the broker accepts, and the key type each needs.
ALGORITHMS = {"RS256": "RSA", "ES256": "EC"}
MIN_RSA_BITS = 2048
# The refusal reason of a token whose `kid` the key set lacks: the one failure that may
# mean the cluster has a new key (a refetch is allowed, rate-limited).
UNKNOWN_KEY = "UnknownSigningKey"
_B64URL = re.compile(r"[A-Za-z0-9_-]+")


def refusal(message: str, reason: str = "InvalidToken") -> Refusal:
    return Refusal(reason, f"sidecred broker: token refused: {message}", 401)


def shown(value: object, limit: int = 64) -> str:
    """A value taken from a token, as JSON and cut, for a message (never the token itself)."""
    if value is None or isinstance(value, str | int | float | bool):
        text = json.dumps(value)
    else:
        text = f"a JSON {'object' if isinstance(value, dict) else 'array'}"
    return text if len(text) <= limit + 2 else text[:limit] + "..."


@dataclass(frozen=True)
class SigningKey:
    """One key of the cluster's JWKS, with the algorithm it signs with."""

    kid: str
    algorithm: str  # RS256 | ES256
    public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey

    def signed(self, message: bytes, signature: bytes) -> bool:
        """Whether `signature` over `message` was made with this key's private half."""
        try:
            if isinstance(self.public_key, rsa.RSAPublicKey):
                self.public_key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
            else:
                if len(signature) != 64:  # ES256 signs with raw r || s, 32 bytes each
                    return False
                r, s = int.from_bytes(signature[:32]), int.from_bytes(signature[32:])
                der = encode_dss_signature(r, s)
                self.public_key.verify(der, message, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True)
class KeySet:
    """The cluster's issuer and its signing keys, as fetched together."""

    issuer: str
    keys: tuple[SigningKey, ...]

    def by_kid(self, kid: str) -> SigningKey | None:
        return next((key for key in self.keys if key.kid == kid), None)


def _b64_int(value: object) -> int:
    if not isinstance(value, str):
        raise ValueError("not a base64url string")
    return int.from_bytes(_unb64(value))


def _jwk_key(jwk: Mapping[str, Any]) -> SigningKey | None:
    """The key a JWK describes, or None for one the broker does not verify with."""
    kid, kty = jwk.get("kid"), jwk.get("kty")
    if not isinstance(kid, str) or jwk.get("use", "sig") != "sig":
        return None
    try:
        if kty == "RSA":
            numbers = rsa.RSAPublicNumbers(_b64_int(jwk.get("e")), _b64_int(jwk.get("n")))
            public: rsa.RSAPublicKey | ec.EllipticCurvePublicKey = numbers.public_key()
            algorithm = "RS256"
            if public.key_size < MIN_RSA_BITS:
                return None
        elif kty == "EC" and jwk.get("crv") == "P-256":
            x, y = _b64_int(jwk.get("x")), _b64_int(jwk.get("y"))
            public = ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()
            algorithm = "ES256"
        else:
            return None
    except (ValueError, binascii.Error):
        return None
    if jwk.get("alg", algorithm) != algorithm:
        return None
    return SigningKey(kid, algorithm, public)


def key_set_from(discovery: Mapping[str, Any], jwks: Mapping[str, Any]) -> KeySet:
    """The issuer of an OpenID discovery document and the usable keys of a JWKS.

    ValueError when either is not what the API server serves.
    """
    issuer = discovery.get("issuer") if isinstance(discovery, Mapping) else None
    if not isinstance(issuer, str) or not issuer:
        raise ValueError("the OpenID configuration has no issuer")
    entries = jwks.get("keys") if isinstance(jwks, Mapping) else None
    if not isinstance(entries, list):
        raise ValueError("the JWKS has no keys list")
    keys = [_jwk_key(entry) for entry in entries if isinstance(entry, Mapping)]
    return KeySet(issuer, tuple(key for key in keys if key is not None))


@dataclass(frozen=True)
class Token:
    """A token split and decoded, not yet verified."""

    header: Mapping[str, Any]
    claims: Mapping[str, Any]
    signed: bytes  # the ASCII of `header.payload`, what the signature covers
    signature: bytes

    @property
    def kid(self) -> str | None:
        kid = self.header.get("kid")
        return kid if isinstance(kid, str) else None


def _unb64(part: str) -> bytes:
    if not _B64URL.fullmatch(part) or len(part) % 4 == 1:
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _json_object(part: str, name: str) -> Mapping[str, Any]:
    try:
        raw = _unb64(part)
    except (ValueError, binascii.Error):
        raise refusal(f"the token's {name} is not base64url") from None
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise refusal(f"the token's {name} is not JSON") from None
    if not isinstance(value, dict):
        raise refusal(f"the token's {name} is not a JSON object")
    return value


def parse_token(token: str) -> Token | Refusal:
    """The token's header, claims and signature; a 401 if it is not a signed JWT we accept."""
    if len(token) > MAX_TOKEN_CHARS:
        return refusal(
            f"the token is {len(token)} characters, more than the {MAX_TOKEN_CHARS} "
            "a service-account token can be"
        )
    parts = token.split(".")
    if len(parts) != 3:
        return refusal(
            "the token is not a JWT (header.payload.signature); send the pod's projected "
            "service-account token"
        )
    try:
        header = _json_object(parts[0], "header")
        algorithm = header.get("alg")
        if algorithm not in ALGORITHMS:
            return refusal(
                f"the token's algorithm {shown(algorithm)} is not accepted (only RS256 and "
                "ES256, as a Kubernetes issuer signs)"
            )
        if "crit" in header:
            return refusal("the token's header has critical extensions the broker does not know")
        claims = _json_object(parts[1], "payload")
        signature = _unb64(parts[2])
    except Refusal as refused:
        return refused
    except (ValueError, binascii.Error):
        return refusal("the token's signature is not base64url")
    return Token(header, claims, f"{parts[0]}.{parts[1]}".encode(), signature)


def check_signature(token: Token, keys: KeySet) -> Refusal | None:
    """None when a key of `keys` signed the token with the algorithm it was published for."""
    algorithm = token.header["alg"]
    kid = token.kid
    if kid is not None:
        key = keys.by_kid(kid)
        if key is None:
            return refusal(
                f"the token's signing key {shown(kid)} is not in the cluster's JWKS", UNKNOWN_KEY
            )
        candidates: tuple[SigningKey, ...] = (key,)
    else:  # as the API server does for a token without `kid`: any key may have signed it
        candidates = keys.keys
    usable = [key for key in candidates if key.algorithm == algorithm]
    if not usable:
        return refusal(
            f"the token says {algorithm} but its key is published for "
            f"{candidates[0].algorithm if candidates else 'nothing'}"
        )
    if not any(key.signed(token.signed, token.signature) for key in usable):
        return refusal("the token's signature does not verify against the cluster's JWKS")
    return None


def _number(claims: Mapping[str, Any], name: str) -> float | None:
    """A time claim in seconds since the epoch; None when absent."""
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise refusal(f"the token's {name} claim is not a number")
    return float(value)


def _check_times(claims: Mapping[str, Any], now: float) -> float:
    expires = _number(claims, "exp")
    if expires is None:
        raise refusal("the token has no exp claim; a service-account token always expires")
    if now > expires + LEEWAY_SECONDS:
        raise refusal(f"the token has expired ({int(now - expires)} s ago)")
    not_before = _number(claims, "nbf")
    if not_before is not None and now + LEEWAY_SECONDS < not_before:
        raise refusal(f"the token is not valid yet (nbf is {int(not_before - now)} s ahead)")
    issued = _number(claims, "iat")
    if issued is not None and now + LEEWAY_SECONDS < issued:
        raise refusal(f"the token was issued in the future (iat is {int(issued - now)} s ahead)")
    return expires


def _check_audience(claims: Mapping[str, Any], audience: str) -> None:
    aud = claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    if audience not in audiences:
        raise refusal(
            f"the token's audiences (aud) do not include {shown(audience)}; the sidecar's "
            "projected token for the broker audience is the one to send",
            "WrongAudience",
        )


def _text(container: object, *path: str) -> str:
    for key in path:
        container = container.get(key) if isinstance(container, Mapping) else None
    return container if isinstance(container, str) else ""


def service_account_of(username: str) -> tuple[str, str] | None:
    """(namespace, name) of `system:serviceaccount:<namespace>:<name>`, or None."""
    namespace, _, account = username.removeprefix(SA_PREFIX).partition(":")
    if not username.startswith(SA_PREFIX) or not namespace or not account:
        return None
    return namespace, account


def caller_from_claims(claims: Mapping[str, Any]) -> Caller:
    """The pod and service account the `kubernetes.io` claims name (raises a 401 Refusal)."""
    subject = _text(claims, "sub")
    found = service_account_of(subject)
    if found is None:
        raise refusal(
            f"the token's subject {shown(subject, 200)} is not a pod's service account",
            "NotAServiceAccount",
        )
    namespace, account = found
    bound = claims.get("kubernetes.io")
    if _text(bound, "namespace") != namespace or _text(bound, "serviceaccount", "name") != account:
        raise refusal(
            "the token's kubernetes.io claims do not name the service account of its subject",
            "NotAServiceAccount",
        )
    pod_name, pod_uid = _text(bound, "pod", "name"), _text(bound, "pod", "uid")
    if not pod_name or not pod_uid:
        raise refusal(
            f"the token of service account {shown(subject, 200)} is not bound to a pod; use the "
            "projected token the webhook mounts in the sidecar",
            "TokenNotBoundToPod",
        )
    return Caller(namespace, account, pod_name, pod_uid)


@dataclass(frozen=True)
class Verified:
    """A token that passed every local check: who it names and when it expires."""

    caller: Caller
    expires_at: float


def check_claims(token: Token, issuer: str, audience: str, now: float) -> Verified | Refusal:
    """The caller a signed token names, or a 401 for an issuer, audience, time or binding problem."""
    claims = token.claims
    try:
        if claims.get("iss") != issuer:
            return refusal(
                f"the token's issuer {shown(claims.get('iss'), 200)} is not the cluster's "
                f"({shown(issuer, 200)})"
            )
        _check_audience(claims, audience)
        expires = _check_times(claims, now)
        return Verified(caller_from_claims(claims), expires)
    except Refusal as refused:
        return refused


def verify_token(token: Token, keys: KeySet, audience: str, now: float) -> Verified | Refusal:
    """Signature first, then the claims: a forged token learns nothing about the claims check."""
    return check_signature(token, keys) or check_claims(token, keys.issuer, audience, now)
