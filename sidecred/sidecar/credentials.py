"""What a credential source returns, and how it fails: no I/O, no botocore."""

from __future__ import annotations

from dataclasses import dataclass
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


@dataclass(slots=True, repr=False, eq=False)
class Credentials:
    """Temporary credentials for the pod's role (compared by identity; repr shows no secret)."""

    access_key_id: str
    secret_access_key: str
    session_token: str
    expiration: datetime  # timezone-aware, UTC
    account_id: str
    role_arn: str

    def __repr__(self) -> str:
        # Never let a secret reach a log line or traceback through repr().
        return f"Credentials(role_arn={self.role_arn!r}, expiration={self.expiration.isoformat()})"


def account_from_arn(arn: str) -> str:
    """The account id field of an ARN (`arn:partition:service:region:account:...`)."""
    parts = arn.split(":", 5)
    return parts[4] if len(parts) > 4 else ""
