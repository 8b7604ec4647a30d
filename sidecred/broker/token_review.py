"""Who is calling: the caller's token reviewed by the API server (TokenReview), cached.

The TokenReview is the verification. The cache only remembers its answer,
keyed by a hash of the token, until shortly before the token's `exp` (read
from the JWT payload without verifying it: it only bounds how long a verified
answer is reused). A token whose pod is deleted is caught by the pod lookup
that follows every review, cached or not.
"""

from __future__ import annotations

import base64
import binascii
import collections
import hashlib
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from sidecred.broker.authorise import Caller, unavailable
from sidecred.pods.annotations import q
from sidecred.pods.refusal import Refusal

SA_PREFIX = "system:serviceaccount:"
EXTRA_POD_NAME = "authentication.kubernetes.io/pod-name"
EXTRA_POD_UID = "authentication.kubernetes.io/pod-uid"
# A verified answer is reused until this long before the token expires, so a
# token is never accepted past its expiry on the strength of an old review.
EXPIRY_MARGIN_SECONDS = 30.0
# A token without a readable `exp` is reviewed again after this long.
NO_EXPIRY_TTL_SECONDS = 60.0
# A refused token is remembered this long, so a caller repeating a bad token costs no reviews.
REFUSED_TTL_SECONDS = 10.0
MAX_CACHED_REVIEWS = 20_000  # about 300 bytes each
MAX_TOKEN_CHARS = 16 * 1024
REVIEW_TIMEOUT = (2.0, 5.0)  # (connect, read) seconds


@dataclass(frozen=True)
class Reviewed:
    """A review's answer: the caller, or the refusal, and until when it may be reused."""

    caller: Caller | None
    refusal: Refusal | None
    reuse_until: float


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
    if len(token) > MAX_TOKEN_CHARS or not _looks_like_jwt(token):
        return Refusal(
            "InvalidToken", "sidecred broker: the bearer token is not a service-account token", 401
        )
    return token


def _looks_like_jwt(token: str) -> bool:
    parts = token.split(".")
    allowed = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    return len(parts) == 3 and all(part and set(part) <= allowed for part in parts)


def token_expiry(token: str) -> float | None:
    """The `exp` claim of a JWT (seconds since the epoch), read without verifying; None if absent."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, binascii.Error, UnicodeDecodeError):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    return float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None


def _first(extra: Mapping[str, Any], key: str) -> str:
    values = extra.get(key)
    if isinstance(values, list) and values and isinstance(values[0], str):
        return values[0]
    return ""


def caller_from_review(review: Mapping[str, Any], audience: str) -> Caller | Refusal:
    """The pod a TokenReview's `status` names, or a 401 naming what is wrong. Pure."""
    status = review.get("status") if isinstance(review, Mapping) else None
    status = status if isinstance(status, Mapping) else {}
    if status.get("authenticated") is not True:
        cause = str(status.get("error") or "the token was not authenticated")
        return Refusal("InvalidToken", f"sidecred broker: token refused: {cause[:300]}", 401)
    audiences = status.get("audiences")
    if not isinstance(audiences, list) or audience not in audiences:
        return Refusal(
            "WrongAudience",
            f"sidecred broker: the token is not for audience {q(audience)}",
            401,
        )
    user = status.get("user")
    user = user if isinstance(user, Mapping) else {}
    username = str(user.get("username") or "")
    namespace, _, account = username.removeprefix(SA_PREFIX).partition(":")
    if not username.startswith(SA_PREFIX) or not namespace or not account:
        return Refusal(
            "NotAServiceAccount",
            f"sidecred broker: the token belongs to {q(username)}, not a pod's service account",
            401,
        )
    extra = user.get("extra")
    extra = extra if isinstance(extra, Mapping) else {}
    pod_name, pod_uid = _first(extra, EXTRA_POD_NAME), _first(extra, EXTRA_POD_UID)
    if not pod_name or not pod_uid:
        return Refusal(
            "TokenNotBoundToPod",
            f"sidecred broker: the token of service account {q(username)} is not bound "
            "to a pod; use the projected token the webhook mounts in the sidecar",
            401,
        )
    return Caller(namespace, account, pod_name, pod_uid)


class TokenReviewer:
    """Reviews tokens with the API server and remembers the answers (bounded, LRU)."""

    def __init__(
        self,
        api: client.ApiClient,
        audience: str,
        *,
        clock: Callable[[], float] = time.time,
        record: Callable[[str], None] = lambda result: None,
    ) -> None:
        self._api = client.AuthenticationV1Api(api)
        self.audience = audience
        self._clock = clock
        self._record = record  # "hit" | "authenticated" | "refused" | "error"
        self._lock = threading.Lock()
        self._cache: collections.OrderedDict[bytes, Reviewed] = collections.OrderedDict()

    def review(self, token: str) -> Caller | Refusal:
        key = hashlib.sha256(token.encode()).digest()
        now = self._clock()
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None and now < cached.reuse_until:
                self._cache.move_to_end(key)
                self._record("hit")
                return cached.caller or cached.refusal  # type: ignore[return-value]
        try:
            answer = caller_from_review(self._call(token), self.audience)
        except Refusal as refusal:
            self._record("error")
            return refusal
        self._record("refused" if isinstance(answer, Refusal) else "authenticated")
        self._remember(key, answer, token, now)
        return answer

    def _call(self, token: str) -> dict[str, Any]:
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": {"token": token, "audiences": [self.audience]},
        }
        try:
            response = self._api.create_token_review(
                body, _preload_content=False, _request_timeout=REVIEW_TIMEOUT
            )
            review = json.loads(response.data)
        except ApiException as exc:
            raise unavailable(
                f"sidecred broker: TokenReview failed: HTTP {exc.status} {exc.reason}".strip()
            ) from None
        except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            raise unavailable(
                f"sidecred broker: Kubernetes API unreachable for TokenReview: {type(exc).__name__}"
            ) from None
        # Anything but an object has no status, so caller_from_review refuses it.
        return review if isinstance(review, dict) else {}

    def _remember(self, key: bytes, answer: Caller | Refusal, token: str, now: float) -> None:
        if isinstance(answer, Refusal):
            until = now + REFUSED_TTL_SECONDS
        else:
            expiry = token_expiry(token)
            until = (
                now + NO_EXPIRY_TTL_SECONDS if expiry is None else expiry - EXPIRY_MARGIN_SECONDS
            )
            if until <= now:
                return
        entry = Reviewed(
            answer if isinstance(answer, Caller) else None,
            answer if isinstance(answer, Refusal) else None,
            until,
        )
        with self._lock:
            self._cache[key] = entry
            self._cache.move_to_end(key)
            while len(self._cache) > MAX_CACHED_REVIEWS:
                self._cache.popitem(last=False)
