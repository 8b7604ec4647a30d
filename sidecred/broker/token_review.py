"""A TokenReview, for the one case the broker's own checks cannot settle. Cached.

A token has already been verified locally (signature, issuer, audience, times,
`kubernetes.io` claims) when it gets here; a review is made only when the pod
it names is not in the broker's pod cache (a pod not seen yet, or one outside
the selector), to let the API server confirm the binding. Its answer is
remembered, keyed by a hash of the token, until shortly before the verified
`exp`, and forgotten at once with the pod's uid (`forget`). Requests with the
same token share one review in flight.
"""

from __future__ import annotations

import collections
import concurrent.futures
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
from sidecred.broker.jwt_verify import Verified, service_account_of
from sidecred.pods.annotations import q
from sidecred.pods.refusal import Refusal

EXTRA_POD_NAME = "authentication.kubernetes.io/pod-name"
EXTRA_POD_UID = "authentication.kubernetes.io/pod-uid"
# A verified answer is reused until this long before the token expires, so a
# token is never accepted past its expiry on the strength of an old review.
EXPIRY_MARGIN_SECONDS = 30.0
# A refused token is remembered this long, so a caller repeating a bad token costs no reviews.
REFUSED_TTL_SECONDS = 10.0
MAX_CACHED_REVIEWS = 20_000  # about 300 bytes each
REVIEW_TIMEOUT = (2.0, 5.0)  # (connect, read) seconds


@dataclass(frozen=True)
class Reviewed:
    """A review's answer: the caller, or the refusal, and until when it may be reused."""

    caller: Caller | None
    refusal: Refusal | None
    reuse_until: float
    uid: str  # the pod the token names: forgotten with it


def _first(extra: Mapping[str, Any], key: str) -> str:
    values = extra.get(key)
    if isinstance(values, list) and values and isinstance(values[0], str):
        return values[0]
    return ""


def _unauthorised(code: str, why: str) -> Refusal:
    return Refusal(code, f"sidecred broker: {why}", 401)


def caller_from_review(review: Mapping[str, Any], audience: str) -> Caller | Refusal:
    """The pod a TokenReview's `status` names, or a 401 naming what is wrong. Pure."""
    status = review.get("status") if isinstance(review, Mapping) else None
    status = status if isinstance(status, Mapping) else {}
    if status.get("authenticated") is not True:
        cause = str(status.get("error") or "the token was not authenticated")
        return _unauthorised("InvalidToken", f"token refused: {cause[:300]}")
    audiences = status.get("audiences")
    if not isinstance(audiences, list) or audience not in audiences:
        return _unauthorised("WrongAudience", f"the token is not for audience {q(audience)}")
    user = status.get("user")
    user = user if isinstance(user, Mapping) else {}
    username = str(user.get("username") or "")
    found = service_account_of(username)
    if found is None:
        return _unauthorised(
            "NotAServiceAccount", f"the token belongs to {q(username)}, not a pod's service account"
        )
    namespace, account = found
    extra = user.get("extra")
    extra = extra if isinstance(extra, Mapping) else {}
    pod_name, pod_uid = _first(extra, EXTRA_POD_NAME), _first(extra, EXTRA_POD_UID)
    if not pod_name or not pod_uid:
        return _unauthorised(
            "TokenNotBoundToPod",
            f"the token of service account {q(username)} is not bound to a pod; "
            "use the projected token the webhook mounts in the sidecar",
        )
    return Caller(namespace, account, pod_name, pod_uid)


class TokenReviewer:
    """Reviews tokens with the API server and remembers the answers (bounded, LRU, by pod uid)."""

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
        self._by_uid: dict[str, set[bytes]] = {}  # so forgetting a pod costs its own entries
        self._inflight: dict[bytes, tuple[str, concurrent.futures.Future[Caller | Refusal]]] = {}

    def review(self, token: str, verified: Verified) -> Caller | Refusal:
        """The API server's word on a locally verified token: its caller, or why not."""
        key = hashlib.sha256(token.encode()).digest()
        uid = verified.caller.pod_uid
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None and self._clock() < cached.reuse_until:
                self._cache.move_to_end(key)
                self._record("hit")
                return cached.caller or cached.refusal  # type: ignore[return-value]
            flight = self._inflight.get(key)
            leader = flight is None
            if flight is None:
                flight = self._inflight[key] = (uid, concurrent.futures.Future())
        if not leader:
            self._record("hit")
            try:
                return flight[1].result(timeout=sum(REVIEW_TIMEOUT) + 1.0)
            except (TimeoutError, concurrent.futures.CancelledError):
                return unavailable("sidecred broker: another request's TokenReview did not finish")
        try:
            answer = self._answer(token, verified)
        except BaseException:
            with self._lock:
                if self._inflight.get(key) is flight:
                    del self._inflight[key]
            flight[1].cancel()
            raise
        with self._lock:
            # Stored only if the pod was not forgotten meanwhile (forget drops the flight).
            if self._inflight.pop(key, None) is flight:
                self._remember(key, answer, verified)
        flight[1].set_result(answer)
        return answer

    def _answer(self, token: str, verified: Verified) -> Caller | Refusal:
        try:
            answer = caller_from_review(self._call(token), self.audience)
        except Refusal as refusal:
            self._record("error")
            return refusal
        self._record("refused" if isinstance(answer, Refusal) else "authenticated")
        if isinstance(answer, Caller) and answer != verified.caller:
            return Refusal(
                "InvalidToken",
                "sidecred broker: token refused: the API server's review names another pod "
                "than the token's claims",
                401,
            )
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

    def _remember(self, key: bytes, answer: Caller | Refusal, verified: Verified) -> None:
        """Store a review's answer (a 503 is not an answer). Holds the lock."""
        if isinstance(answer, Refusal) and answer.status != 401:
            return
        now = self._clock()
        if isinstance(answer, Refusal):
            until = now + REFUSED_TTL_SECONDS
        else:
            until = verified.expires_at - EXPIRY_MARGIN_SECONDS
            if until <= now:
                return
        caller = answer if isinstance(answer, Caller) else None
        refusal = answer if isinstance(answer, Refusal) else None
        uid = verified.caller.pod_uid
        self._cache[key] = Reviewed(caller, refusal, until, uid)
        self._cache.move_to_end(key)
        self._by_uid.setdefault(uid, set()).add(key)
        while len(self._cache) > MAX_CACHED_REVIEWS:
            old_key, old = self._cache.popitem(last=False)
            self._drop_index(old.uid, old_key)

    def _drop_index(self, uid: str, key: bytes) -> None:
        keys = self._by_uid.get(uid)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._by_uid[uid]

    def forget(self, uid: str) -> int:
        """Drop every answer and review in flight for pod `uid`; how many answers were dropped."""
        with self._lock:
            stale = self._by_uid.pop(uid, set())
            for key in stale:
                self._cache.pop(key, None)
            for key in [k for k, (owner, _) in self._inflight.items() if owner == uid]:
                del self._inflight[key]
        return len(stale)
