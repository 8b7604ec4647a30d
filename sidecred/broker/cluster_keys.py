"""The cluster's service-account issuer and signing keys, and tokens verified against them.

`ClusterKeys` reads the issuer from `/.well-known/openid-configuration` and the
keys from `/openid/v1/jwks` on the API server, with the broker's own
credentials (the non-resource URLs of `system:service-account-issuer-discovery`):
at start, retrying with backoff until it has them, then every REFRESH_SECONDS
(so a key the API server stops publishing stops verifying), and when a token
names a `kid` the set lacks, at most once per UNKNOWN_KEY_REFETCH_SECONDS. A
key rotation costs one fetch however many tokens carry the new key; a flood of
invented key ids costs at most one fetch per 30 s.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from sidecred.broker.authorise import unavailable
from sidecred.broker.jwt_verify import (
    UNKNOWN_KEY,
    KeySet,
    Verified,
    key_set_from,
    parse_token,
    verify_token,
)
from sidecred.kube.watch import next_backoff
from sidecred.pods.refusal import Refusal
from sidecred.serving.background import Background

log = logging.getLogger("sidecred.broker")

REFRESH_SECONDS = 300.0
# A token whose `kid` is not in the set refetches it at most this often.
UNKNOWN_KEY_REFETCH_SECONDS = 30.0
FETCH_TIMEOUT = (2.0, 5.0)  # (connect, read) seconds


def may_refetch(now: float, last_refetch: float | None) -> bool:
    """Whether an unknown `kid` may cause a fetch now (monotonic seconds)."""
    return last_refetch is None or now - last_refetch >= UNKNOWN_KEY_REFETCH_SECONDS


class ClusterKeys:
    """The issuer and keys the broker verifies tokens with; `kind`, `synced` and
    `progress` as the watch caches have them, for /readyz."""

    kind = "signing key"

    def __init__(
        self,
        api: client.ApiClient,
        audience: str,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        record: Callable[[str, str], None] = lambda reason, result: None,
        record_verification: Callable[[str], None] = lambda result: None,
        refresh_seconds: float = REFRESH_SECONDS,
    ) -> None:
        self._well_known = client.WellKnownApi(api)
        self._openid = client.OpenidApi(api)
        self.audience = audience
        self._clock = clock
        self._wall_clock = wall_clock
        self._record = record  # (reason: start|refresh|unknown-kid, result: ok|error|<HTTP status>)
        self._record_verification = record_verification  # verified | the refusal's code
        self._refresh_seconds = refresh_seconds
        self._keys: KeySet | None = None
        self._refetch_lock = threading.Lock()
        self._last_refetch: float | None = None
        self._background = Background("signing-keys", self._run)
        self.last_error = ""

    # --- verification --------------------------------------------------------------
    def verify(self, token: str) -> Verified | Refusal:
        """The caller a token names, or a 401 (a 503 while no keys have been fetched yet)."""
        result = self._verify(token)
        self._record_verification(result.reason if isinstance(result, Refusal) else "verified")
        return result

    def _verify(self, token: str) -> Verified | Refusal:
        parsed = parse_token(token)
        if isinstance(parsed, Refusal):
            return parsed
        keys = self._keys
        if keys is None:
            return unavailable(
                "sidecred broker: the cluster's service-account signing keys are not loaded "
                f"yet ({self.last_error or 'first fetch in progress'})"
            )
        result = verify_token(parsed, keys, self.audience, self._wall_clock())
        if isinstance(result, Refusal) and result.reason == UNKNOWN_KEY and parsed.kid is not None:
            fresh = self._refetch_for(parsed.kid)
            if fresh is not None:
                result = verify_token(parsed, fresh, self.audience, self._wall_clock())
        return result

    def _refetch_for(self, kid: str) -> KeySet | None:
        """A newer key set if one may be fetched now (or another request just fetched one)."""
        with self._refetch_lock:  # one refetch at a time; the others then look again
            keys = self._keys
            if keys is not None and keys.by_kid(kid) is not None:
                return keys
            now = self._clock()
            if not may_refetch(now, self._last_refetch):
                return None
            self._last_refetch = now
            return self._fetch("unknown-kid")

    # --- fetching ------------------------------------------------------------------
    @property
    def synced(self) -> bool:
        return self._keys is not None

    @property
    def progress(self) -> str:
        """Why the keys are not there yet, for /readyz (as the watch caches say it)."""
        return self.last_error or "waiting for the first fetch"

    def _fetch(self, reason: str) -> KeySet | None:
        """Fetch issuer and keys; on failure keep the current ones and say why."""
        try:
            discovery = self._read(
                self._well_known.get_service_account_issuer_open_id_configuration
            )
            jwks = self._read(self._openid.get_service_account_issuer_open_id_keyset)
            keys = key_set_from(discovery, jwks)
            if not keys.keys:
                raise ValueError("the cluster's JWKS has no RS256 or ES256 signing key")
        except ApiException as exc:
            self._failed(reason, str(exc.status), f"HTTP {exc.status} {exc.reason}".strip())
            return None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            self._failed(reason, "error", f"unreachable: {type(exc).__name__}")
            return None
        except ValueError as exc:
            self._failed(reason, "error", str(exc))
            return None
        self._keys, self.last_error = keys, ""
        self._record(reason, "ok")
        return keys

    @staticmethod
    def _read(call: Callable[..., Any]) -> Any:
        """The JSON document a generated API call returns, parsed (ValueError if it is not)."""
        return json.loads(call(_preload_content=False, _request_timeout=FETCH_TIMEOUT).data)

    def _failed(self, reason: str, result: str, why: str) -> None:
        self.last_error = f"reading the service-account issuer's keys: {why}"
        self._record(reason, result)
        log.warning("signing keys not fetched (%s): %s", reason, self.last_error)

    # --- lifecycle -----------------------------------------------------------------
    def start(self) -> None:
        self._background.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._background.stop(timeout)

    def _run(self) -> None:
        delay = 0.0
        while not self._background.stopping.is_set():
            if self._fetch("refresh" if self.synced else "start") is not None:
                delay = 0.0
                self._background.stopping.wait(self._refresh_seconds)
            else:
                delay = next_backoff(delay)
                self._background.stopping.wait(delay)
