"""The unsafe `assume-role` source: `sts:AssumeRole` signed with base credentials, via botocore.

Base credentials come from botocore's default chain (the node's instance
metadata, in practice), which is why the webhook gates this source behind a
flag. botocore is not part of the sidecar's default install or image: it comes
with the `assume-role` extra and the `-assume-role` sidecar image. Only
`sidecred fetch` imports this module. `fetch()` blocks on STS.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

import botocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from sidecred.sidecar.config import SidecarConfig
from sidecred.sidecar.credentials import Credentials, SourceError, account_from_arn
from sidecred.sidecar.session_name import build_session_name, session_tags, sts_tags

# STS caps sessions reached by role chaining at one hour.
ROLE_CHAINING_MAX_DURATION = 3600
# Base credentials that are themselves a role session: assuming a role with
# them is role chaining. These are botocore's `Credentials.method` values.
_ROLE_SESSION_METHODS = frozenset(
    {"assume-role", "assume-role-with-web-identity", "iam-role", "container-role", "sso"}
)
# One attempt per call: the refresh loop owns retries (backoff with jitter),
# so there is one retry policy and every failure is logged. botocore's
# `max_attempts` counts retries after the first call; `total_max_attempts`
# counts every call.
_CLIENT_CONFIG = Config(
    retries={"mode": "standard", "total_max_attempts": 1},
    connect_timeout=3,
    read_timeout=10,
)


def chained_duration(requested: int, base_method: str | None) -> int:
    """The DurationSeconds to ask for, clamped when the base credentials are a role session."""
    if base_method in _ROLE_SESSION_METHODS:
        return min(requested, ROLE_CHAINING_MAX_DURATION)
    return requested


def is_role_chaining_refusal(error: SourceError) -> bool:
    """STS refused DurationSeconds above the role-chaining limit."""
    return error.code == "ValidationError" and "chaining" in error.message.lower()


def _to_sts_error(exc: Exception) -> SourceError:
    if isinstance(exc, SourceError):
        return exc
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return SourceError(
            str(err.get("Code") or "Unknown"), str(err.get("Message") or exc), refused=status == 403
        )
    if isinstance(exc, BotoCoreError):
        return SourceError(type(exc).__name__, str(exc))
    return SourceError(type(exc).__name__, str(exc) or type(exc).__name__)


def _credentials_from_response(response: dict[str, Any], role_arn: str) -> Credentials:
    creds = response["Credentials"]
    expiration = creds["Expiration"]
    if isinstance(expiration, str):
        expiration = datetime.fromisoformat(expiration.replace("Z", "+00:00"))
    if expiration.tzinfo is None:
        expiration = expiration.replace(tzinfo=UTC)
    assumed_arn = response.get("AssumedRoleUser", {}).get("Arn", "")
    return Credentials(
        access_key_id=creds["AccessKeyId"],
        secret_access_key=creds["SecretAccessKey"],
        session_token=creds["SessionToken"],
        expiration=expiration.astimezone(UTC),
        account_id=account_from_arn(assumed_arn) or account_from_arn(role_arn),
        role_arn=role_arn,
    )


class _StsSource:
    """Shared parts: the lazily created botocore STS client."""

    def __init__(self, config: SidecarConfig) -> None:
        self.config = config
        self.role_arn = config.role_arn
        self.session_name = build_session_name(
            config.pod_namespace, config.pod_name, config.session_name
        )
        self._session: Any = None
        self._client: Any = None
        self._lock = threading.Lock()

    def _botocore_session(self) -> Any:
        if self._session is None:
            session = botocore.session.get_session()
            # Regional endpoint when a region is known; AWS_ENDPOINT_URL_STS still
            # wins, through botocore's own endpoint resolution.
            session.set_config_variable("sts_regional_endpoints", "regional")
            self._session = session
        return self._session

    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                session = self._botocore_session()
                self._client = session.create_client(
                    "sts",
                    region_name=self.config.region or session.get_config_variable("region"),
                    config=_CLIENT_CONFIG,
                )
            return self._client

    def fetch(self) -> Credentials:
        try:
            return self._fetch()
        except Exception as exc:
            raise _to_sts_error(exc) from None

    def _fetch(self) -> Credentials:
        raise NotImplementedError


class AssumeRoleSource(_StsSource):
    """`sts:AssumeRole` with the botocore default credential chain as base credentials."""

    def __init__(self, config: SidecarConfig) -> None:
        super().__init__(config)
        self._duration_cap: int | None = None

    def duration(self) -> int:
        requested = self.config.session_duration
        if self._duration_cap is not None:
            return min(requested, self._duration_cap)
        base = self._botocore_session().get_credentials()
        return chained_duration(requested, getattr(base, "method", None))

    def _assume(self, duration: int) -> Credentials:
        c = self.config
        params: dict[str, Any] = {
            "RoleArn": self.role_arn,
            "RoleSessionName": self.session_name,
            "DurationSeconds": duration,
            # Set once per session and trusted by policies and CloudTrail: always
            # `<namespace>.<pod>` from the downward API, never an annotation.
            "SourceIdentity": build_session_name(c.pod_namespace, c.pod_name),
            "Tags": sts_tags(
                session_tags(c.pod_namespace, c.pod_name, c.pod_uid, c.service_account)
            ),
        }
        if self.config.external_id:
            params["ExternalId"] = self.config.external_id
        return _credentials_from_response(self.client().assume_role(**params), self.role_arn)

    def _fetch(self) -> Credentials:
        duration = self.duration()
        try:
            return self._assume(duration)
        except ClientError as exc:
            error = _to_sts_error(exc)
            if duration > ROLE_CHAINING_MAX_DURATION and is_role_chaining_refusal(error):
                # Role chaining: clamp to an hour from now on instead of failing.
                self._duration_cap = ROLE_CHAINING_MAX_DURATION
                return self._assume(ROLE_CHAINING_MAX_DURATION)
            raise
