"""`sts:AssumeRole` for a grant, with the broker pod's own base credentials (botocore chain).

One botocore client for every pod. The regional endpoint is used when a region
is known, and `AWS_ENDPOINT_URL_STS` wins through botocore's own endpoint
resolution. Base credentials that are themselves a role session (IRSA, Pod
Identity) make this role chaining, which STS caps at an hour.
"""

from __future__ import annotations

import threading
from typing import Any

import botocore.session
from botocore.exceptions import ClientError

from sidecred.broker.authorise import Grant
from sidecred.sidecar.assume_role import (
    _CLIENT_CONFIG,
    ROLE_CHAINING_MAX_DURATION,
    _credentials_from_response,
    _to_sts_error,
    chained_duration,
    is_role_chaining_refusal,
)
from sidecred.sidecar.credentials import Credentials, SourceError
from sidecred.sidecar.session_name import sts_tags


class RoleAssumer:
    """Calls `sts:AssumeRole` for grants; every failure becomes an SourceError (code, message)."""

    def __init__(self, region: str | None) -> None:
        session = botocore.session.get_session()
        session.set_config_variable("sts_regional_endpoints", "regional")
        self._session = session
        self._region = region or session.get_config_variable("region")
        self._client: Any = None
        self._lock = threading.Lock()
        self._duration_cap: int | None = None

    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = self._session.create_client(
                    "sts", region_name=self._region, config=_CLIENT_CONFIG
                )
            return self._client

    def _duration(self, requested: int) -> int:
        if self._duration_cap is not None:
            return min(requested, self._duration_cap)
        base = self._session.get_credentials()
        return chained_duration(requested, getattr(base, "method", None))

    def _call(self, grant: Grant, duration: int) -> Credentials:
        params: dict[str, Any] = {
            "RoleArn": grant.role_arn,
            "RoleSessionName": grant.session_name,
            "DurationSeconds": duration,
            "SourceIdentity": grant.source_identity,
            "Tags": sts_tags(grant.tags),
        }
        if grant.external_id:
            params["ExternalId"] = grant.external_id
        return _credentials_from_response(self.client().assume_role(**params), grant.role_arn)

    def assume(self, grant: Grant) -> Credentials:
        try:
            duration = self._duration(grant.duration)
            try:
                return self._call(grant, duration)
            except ClientError as exc:
                error = _to_sts_error(exc)
                if duration <= ROLE_CHAINING_MAX_DURATION or not is_role_chaining_refusal(error):
                    raise
                # Role chaining the chain did not reveal: an hour from now on.
                self._duration_cap = ROLE_CHAINING_MAX_DURATION
                return self._call(grant, ROLE_CHAINING_MAX_DURATION)
        except SourceError:
            raise
        except Exception as exc:
            raise _to_sts_error(exc) from None
