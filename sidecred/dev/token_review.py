"""Pod-bound service-account tokens, the issuer's keys, and `TokenReview` for the API server stub.

`TokenAuthority(stub)` signs JWTs as the API server does for the kubelet's
projected volumes (RS256 by default, or ES256; `kid` the SHA-256 of the public
key; audiences, expiry, bound to a pod), publishes its keys where the API
server does (`GET /.well-known/openid-configuration` and `GET /openid/v1/jwks`),
and answers `POST /apis/authentication.k8s.io/v1/tokenreviews` with the API
server's shapes: `status.authenticated`, `status.user` (username
`system:serviceaccount:<ns>:<sa>`, uid, groups, `extra` with the pod's name
and uid as lists), `status.audiences` (the requested audiences the token
carries) and `status.error` for a token that is forged, expired, for other
audiences, or bound to a pod that no longer exists. `rotate()` adds a new
signing key and keeps publishing the old ones, as an API server does while
tokens signed with them are still valid; `retire()` stops publishing one.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from sidecred.dev.kube_stub import KubeApiStub, StubRequest, StubResponse, json_response
from sidecred.dev.local_pod import PodIdentity

TOKENREVIEWS_PATH = r"/apis/authentication\.k8s\.io/v1/tokenreviews"
ISSUER = "https://kubernetes.default.svc.cluster.local"
INVALID = "invalid bearer token"


DISCOVERY_PATH = r"/\.well-known/openid-configuration"
JWKS_PATH = r"/openid/v1/jwks"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _b64_int(value: int, size: int | None = None) -> str:
    return _b64(value.to_bytes(size or (value.bit_length() + 7) // 8))


@dataclass(frozen=True)
class IssuerKey:
    """One signing key of the issuer: its id, algorithm and private half."""

    kid: str
    algorithm: str  # RS256 | ES256
    private: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

    @classmethod
    def generate(cls, algorithm: str = "RS256") -> IssuerKey:
        private: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
        if algorithm == "RS256":
            private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        elif algorithm == "ES256":
            private = ec.generate_private_key(ec.SECP256R1())
        else:
            raise ValueError(f"unsupported algorithm {algorithm}")
        der = private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return cls(_b64(hashlib.sha256(der).digest()), algorithm, private)  # as kube-apiserver

    def jwk(self) -> dict[str, str]:
        public = self.private.public_key()
        common = {"use": "sig", "kid": self.kid, "alg": self.algorithm}
        if isinstance(public, rsa.RSAPublicKey):
            numbers = public.public_numbers()
            return {**common, "kty": "RSA", "n": _b64_int(numbers.n), "e": _b64_int(numbers.e)}
        point = public.public_numbers()
        x, y = _b64_int(point.x, 32), _b64_int(point.y, 32)
        return {**common, "kty": "EC", "crv": "P-256", "x": x, "y": y}

    def sign(self, message: bytes) -> bytes:
        if isinstance(self.private, rsa.RSAPrivateKey):
            return self.private.sign(message, padding.PKCS1v15(), hashes.SHA256())
        r, s = decode_dss_signature(self.private.sign(message, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32) + s.to_bytes(32)

    def verify(self, message: bytes, signature: bytes) -> bool:
        public = self.private.public_key()
        try:
            if isinstance(public, rsa.RSAPublicKey):
                public.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
            else:
                if len(signature) != 64:
                    return False
                der = encode_dss_signature(
                    int.from_bytes(signature[:32]), int.from_bytes(signature[32:])
                )
                public.verify(der, message, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            return False
        return True


class TokenAuthority:
    """The cluster's token issuer for tests: signs tokens, publishes its keys, reviews tokens."""

    def __init__(
        self,
        stub: KubeApiStub,
        *,
        node_name: str = "node-1",
        clock: Callable[[], float] = time.time,
        algorithm: str = "RS256",
    ) -> None:
        self._stub = stub
        self._clock = clock
        self.node_name = node_name
        self.keys: list[IssuerKey] = [IssuerKey.generate(algorithm)]  # the last one signs
        stub.route("POST", TOKENREVIEWS_PATH, self.handle, counter="tokenreviews.create")
        stub.route("GET", DISCOVERY_PATH, self.discovery, counter="openid.configuration")
        stub.route("GET", JWKS_PATH, self.jwks, counter="openid.jwks")

    # --- keys ----------------------------------------------------------------------
    @property
    def kid(self) -> str:
        """The id of the key new tokens are signed with."""
        return self.keys[-1].kid

    def rotate(self, algorithm: str = "RS256") -> str:
        """Sign new tokens with a new key; the old ones stay published. Returns the new kid."""
        self.keys.append(IssuerKey.generate(algorithm))
        return self.kid

    def retire(self, kid: str) -> None:
        """Stop publishing (and accepting) the key `kid`."""
        self.keys = [key for key in self.keys if key.kid != kid]

    def discovery(self, request: StubRequest) -> StubResponse:
        return json_response(
            200,
            {
                "issuer": ISSUER,
                "jwks_uri": f"{ISSUER}/openid/v1/jwks",
                "response_types_supported": ["id_token"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": sorted({k.algorithm for k in self.keys}),
            },
        )

    def jwks(self, request: StubRequest) -> StubResponse:
        body = json.dumps({"keys": [key.jwk() for key in self.keys]}).encode()
        return StubResponse(200, body, content_type="application/jwk-set+json")

    # --- issuing -------------------------------------------------------------------
    def issue(
        self,
        namespace: str,
        service_account: str,
        pod_name: str,
        pod_uid: str,
        *,
        audiences: Iterable[str] = ("sidecred-broker",),
        expires_in: float = 3600,
        kid: str | None = None,
    ) -> str:
        """A token bound to a pod, as a projected volume holds it.

        `kid` puts another key id in the header (the signature is still this
        authority's current key): a forgery that names a key the cluster has.
        """
        now = int(self._clock())
        claims = {
            "aud": list(audiences),
            "exp": int(now + expires_in),
            "iat": now,
            "nbf": now,
            "iss": ISSUER,
            "jti": str(uuid.uuid4()),
            "sub": f"system:serviceaccount:{namespace}:{service_account}",
            "kubernetes.io": {
                "namespace": namespace,
                "node": {"name": self.node_name, "uid": str(uuid.uuid5(uuid.NAMESPACE_DNS, "n"))},
                "pod": {"name": pod_name, "uid": pod_uid},
                "serviceaccount": {
                    "name": service_account,
                    "uid": self._sa_uid(namespace, service_account),
                },
            },
        }
        key = self.keys[-1]
        header = {"alg": key.algorithm, "kid": kid or key.kid}
        signed = _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(claims).encode())
        return signed + "." + _b64(key.sign(signed.encode()))

    def pod_token(self, pod: Mapping[str, Any], **kwargs: Any) -> str:
        """A token bound to `pod` (a pod object as stored in the stub)."""
        meta = pod["metadata"]
        account = (pod.get("spec") or {}).get("serviceAccountName") or "default"
        return self.issue(meta["namespace"], account, meta["name"], meta["uid"], **kwargs)

    def local_pod_token(
        self, identity: PodIdentity, audience: str, expiration: int, now: float
    ) -> str:
        """A token for `sidecred.dev.local_pod.LocalPod(token_issuer=...)` (expiry from this clock)."""
        del now  # the authority's own clock sets iat and exp
        return self.issue(
            identity.namespace,
            identity.service_account,
            identity.name,
            identity.uid,
            audiences=[audience],
            expires_in=expiration,
        )

    @staticmethod
    def _sa_uid(namespace: str, account: str) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"serviceaccount/{namespace}/{account}"))

    # --- reviewing -----------------------------------------------------------------
    def _claims(self, token: str) -> dict[str, Any]:
        parts = token.split(".")
        unverified = ValueError(f"{INVALID}, token could not be verified")
        if len(parts) != 3:
            raise unverified
        try:
            header = json.loads(_unb64(parts[0]))
            signature = _unb64(parts[2])
        except ValueError:
            raise unverified from None
        keys = [
            key
            for key in self.keys
            if isinstance(header, dict)
            and key.kid == header.get("kid")
            and key.algorithm == header.get("alg")
        ]
        signed = f"{parts[0]}.{parts[1]}".encode()
        if not any(key.verify(signed, signature) for key in keys):
            raise unverified
        claims = json.loads(_unb64(parts[1]))
        if not isinstance(claims, dict):
            raise ValueError(f"{INVALID}, token claims are not a JSON object")
        return claims

    def review_status(self, token: str, wanted: list[str]) -> dict[str, Any]:
        """The `status` of a TokenReview for `token` and the requested audiences."""
        try:
            claims = self._claims(token)
        except ValueError as exc:
            return {"authenticated": False, "user": {}, "error": str(exc)}
        if claims["exp"] <= self._clock():
            return {
                "authenticated": False,
                "user": {},
                "error": f"{INVALID}, service account token has expired",
            }
        audiences = [a for a in wanted if a in claims["aud"]] if wanted else list(claims["aud"])
        if not audiences:
            return {
                "authenticated": False,
                "user": {},
                "error": f"{INVALID}, token audiences {claims['aud']} is invalid for the target audiences {wanted}",
            }
        bound = claims["kubernetes.io"]
        pod = self._stub.get("pods", bound["pod"]["name"], bound["namespace"])
        if pod is None or pod["metadata"].get("uid") != bound["pod"]["uid"]:
            return {
                "authenticated": False,
                "user": {},
                "error": f"{INVALID}, service account token has been invalidated",
            }
        namespace = bound["namespace"]
        return {
            "authenticated": True,
            "user": {
                "username": claims["sub"],
                "uid": bound["serviceaccount"]["uid"],
                "groups": [
                    "system:serviceaccounts",
                    f"system:serviceaccounts:{namespace}",
                    "system:authenticated",
                ],
                "extra": {
                    "authentication.kubernetes.io/credential-id": [f"JTI={claims['jti']}"],
                    "authentication.kubernetes.io/node-name": [bound["node"]["name"]],
                    "authentication.kubernetes.io/node-uid": [bound["node"]["uid"]],
                    "authentication.kubernetes.io/pod-name": [bound["pod"]["name"]],
                    "authentication.kubernetes.io/pod-uid": [bound["pod"]["uid"]],
                },
            },
            "audiences": audiences,
        }

    def handle(self, request: StubRequest) -> StubResponse:
        try:
            review = json.loads(request.body)
            spec = review["spec"]
            token = spec["token"]
            wanted = list(spec.get("audiences") or [])
            if not isinstance(token, str):
                raise TypeError("spec.token is not a string")
        except (ValueError, KeyError, TypeError) as exc:
            status = {
                "kind": "Status",
                "apiVersion": "v1",
                "status": "Failure",
                "message": f"TokenReview is invalid: {exc}",
                "reason": "BadRequest",
                "code": 400,
            }
            return json_response(400, status)
        return json_response(
            201,
            {
                "kind": "TokenReview",
                "apiVersion": "authentication.k8s.io/v1",
                "metadata": {"creationTimestamp": None},
                "spec": {"token": token, "audiences": wanted},
                "status": self.review_status(token, wanted),
            },
        )
