"""Who is calling: the bearer token verified locally, its pod from the broker's own cache.

1. The token is verified without an API call (`ClusterKeys.verify`: signature
   against the cluster's JWKS, issuer, audience, times, the `kubernetes.io`
   claims). Any failure is a 401 and costs the API server nothing.
2. The pod the claims name comes from the pod watch cache. `authorise` then
   checks the binding against it (same uid and service account). The watch
   reports the pod's deletion within moments, and the issuer forgets
   everything held for its uid, so no TokenReview is needed to know it lives.
3. Only a pod the cache does not hold (not seen yet, or outside the selector)
   costs a TokenReview, cached per token, and a GET that never enters the
   cache unless the pod is in the selector.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from sidecred.broker.authorise import Caller
from sidecred.broker.jwt_verify import Verified
from sidecred.kube.watch import CACHE, Lookup
from sidecred.pods.refusal import Refusal


class Verifier(Protocol):
    def verify(self, token: str) -> Verified | Refusal: ...


class Reviewer(Protocol):
    def review(self, token: str, verified: Verified) -> Caller | Refusal: ...

    def forget(self, uid: str) -> int: ...


class PodSource(Protocol):
    def cached(self, namespace: str, name: str) -> Mapping[str, Any] | None: ...

    def get(self, namespace: str, name: str) -> Lookup: ...


@dataclass(frozen=True)
class Identified:
    """The caller a token names and that caller's pod as the broker can see it now."""

    caller: Caller
    pod: Lookup


def bearer_token(authorization: str | None) -> str | Refusal:
    """The token of an `Authorization: Bearer <token>` header, or a 401 saying what is wrong."""
    if not authorization:
        return Refusal(
            "MissingToken",
            "sidecred broker: no Authorization header; send the pod's projected service-account "
            "token (broker audience) as `Authorization: Bearer <token>`",
            401,
        )
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return Refusal(
            "MissingToken", "sidecred broker: the Authorization header is not `Bearer <token>`", 401
        )
    return token


@dataclass(frozen=True)
class Identifier:
    """The three parts that turn a bearer token into its caller and pod (steps 1-3 above)."""

    verifier: Verifier
    reviewer: Reviewer
    pods: PodSource

    def identify(self, authorization: str | None) -> Identified | Refusal:
        """The caller and its pod, or why not (401 for the token, 503 when the API server is
        needed and cannot answer)."""
        token = bearer_token(authorization)
        if isinstance(token, Refusal):
            return token
        verified = self.verifier.verify(token)
        if isinstance(verified, Refusal):
            return verified
        caller = verified.caller
        cached = self.pods.cached(caller.namespace, caller.pod_name)
        if cached is not None:
            return Identified(caller, Lookup(cached, CACHE))
        reviewed = self.reviewer.review(token, verified)
        if isinstance(reviewed, Refusal):
            return reviewed
        return Identified(caller, self.pods.get(caller.namespace, caller.pod_name))
