"""What a credential source returns, and how it fails: no I/O."""

from __future__ import annotations

from datetime import datetime


class SourceError(Exception):
    """Getting credentials failed; `code` and `message` are what an operator needs to see.

    The code and message are STS's (or the broker's) own, passed on verbatim.
    `refused` marks an answer that this pod may not have the role (STS's 403,
    the broker's 403: a revocation), as opposed to a failure worth retrying.
    """

    def __init__(self, code: str, message: str, *, refused: bool = False) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.refused = refused


class Credentials:
    """Temporary credentials for a role (compared by identity; repr shows no secret).

    A plain class, not a dataclass: `dataclasses` imports `inspect`, which would
    cost every pod's serving process about two megabytes.
    """

    __slots__ = (
        "access_key_id",
        "account_id",
        "expiration",
        "role_arn",
        "secret_access_key",
        "session_token",
    )

    def __init__(
        self,
        access_key_id: str,
        secret_access_key: str,
        session_token: str,
        expiration: datetime,  # timezone-aware, UTC
        account_id: str,
        role_arn: str,
    ) -> None:
        self.access_key_id = access_key_id
        self.secret_access_key = secret_access_key
        self.session_token = session_token
        self.expiration = expiration
        self.account_id = account_id
        self.role_arn = role_arn

    def __repr__(self) -> str:
        # Never let a secret reach a log line or traceback through repr().
        return f"Credentials(role_arn={self.role_arn!r}, expiration={self.expiration.isoformat()})"


def account_from_arn(arn: str) -> str:
    """The account id field of an ARN (`arn:partition:service:region:account:...`)."""
    parts = arn.split(":", 5)
    return parts[4] if len(parts) > 4 else ""
