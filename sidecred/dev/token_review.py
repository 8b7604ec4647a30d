"""Pod-bound service-account tokens and `TokenReview` for the API server stub.

`TokenAuthority(stub)` issues JWTs as the kubelet's projected volumes get them
(audiences, expiry, bound to a pod) and answers
`POST /apis/authentication.k8s.io/v1/tokenreviews` with the API server's
shapes: `status.authenticated`, `status.user` (username
`system:serviceaccount:<ns>:<sa>`, uid, groups, `extra` with the pod's name
and uid as lists), `status.audiences` (the requested audiences the token
carries) and `status.error` for a token that is forged, expired, for other
audiences, or bound to a pod that no longer exists.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from sidecred.dev.kube_stub import KubeApiStub, StubRequest, StubResponse, json_response
from sidecred.dev.local_pod import PodIdentity

TOKENREVIEWS_PATH = r"/apis/authentication\.k8s\.io/v1/tokenreviews"
ISSUER = "https://kubernetes.default.svc.cluster.local"
INVALID = "invalid bearer token"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenAuthority:
    """The cluster's token issuer for tests: signs tokens, and reviews them on the stub."""

    def __init__(
        self,
        stub: KubeApiStub,
        *,
        node_name: str = "node-1",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._stub = stub
        self._key = secrets.token_bytes(32)
        self._clock = clock
        self.node_name = node_name
        stub.route("POST", TOKENREVIEWS_PATH, self.handle, counter="tokenreviews.create")

    # --- issuing -------------------------------------------------------------------
    def _sign(self, header_payload: str) -> str:
        return _b64(hmac.new(self._key, header_payload.encode(), hashlib.sha256).digest())

    def issue(
        self,
        namespace: str,
        service_account: str,
        pod_name: str,
        pod_uid: str,
        *,
        audiences: Iterable[str] = ("sidecred-broker",),
        expires_in: float = 3600,
    ) -> str:
        """A token bound to a pod, as a projected volume holds it."""
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
        header = _b64(json.dumps({"alg": "HS256", "kid": "stub"}).encode())
        signed = header + "." + _b64(json.dumps(claims).encode())
        return signed + "." + self._sign(signed)

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
        if len(parts) != 3 or not hmac.compare_digest(
            self._sign(parts[0] + "." + parts[1]), parts[2]
        ):
            raise ValueError(f"{INVALID}, token could not be verified")
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
