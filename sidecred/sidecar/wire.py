"""Every body the sidecar's processes exchange, in one place.

- the `/v1/credentials` answer and the JSON error both SDK families parse;
- `sidecred fetch`'s output, the AWS `credential_process` format, and its
  one-line JSON error on stderr, which the serving process reads back.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from sidecred.sidecar.credentials import Credentials, SourceError

TYPE_CHECKING = False  # `typing` is not imported: the serving process would pay ~2 MB for it
if TYPE_CHECKING:
    from typing import Any

# The event `sidecred fetch` logs (on stderr) when it cannot get credentials.
FETCH_FAILED_EVENT = "fetch_failed"


def format_expiration(moment: datetime) -> str:
    """RFC 3339 in UTC with a `Z` suffix (JS v3 and Rust reject offsets)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_expiration(text: str) -> datetime:
    """An RFC 3339 time as a timezone-aware UTC datetime (naive times are taken as UTC)."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def credentials_body(creds: Credentials) -> bytes:
    """The /v1/credentials 200 body, serialised once per refresh."""
    return json.dumps(
        {
            "AccessKeyId": creds.access_key_id,
            "SecretAccessKey": creds.secret_access_key,
            "Token": creds.session_token,
            "Expiration": format_expiration(creds.expiration),
            "AccountId": creds.account_id,
            "RoleArn": creds.role_arn,
        },
        separators=(",", ":"),
    ).encode()


def error_body(code: str, message: str) -> bytes:
    """A JSON error both SDK families parse: JS v3 reads Code/Message, Go and Java code/message."""
    return json.dumps({"Code": code, "Message": message, "code": code, "message": message}).encode()


def process_output(creds: Credentials) -> str:
    """`sidecred fetch`'s stdout: the AWS CLI/SDK `credential_process` format (Version 1)."""
    return json.dumps(
        {
            "Version": 1,
            "AccessKeyId": creds.access_key_id,
            "SecretAccessKey": creds.secret_access_key,
            "SessionToken": creds.session_token,
            "Expiration": format_expiration(creds.expiration),
            "AccountId": creds.account_id,
        }
    )


def parse_process_output(text: bytes, role_arn: str) -> Credentials:
    """Credentials from `sidecred fetch`'s stdout; SourceError naming what is wrong."""
    try:
        data: Any = json.loads(text)
        if data.get("Version") != 1:
            raise ValueError(f"Version {data.get('Version')!r}, expected 1")
        return Credentials(
            access_key_id=str(data["AccessKeyId"]),
            secret_access_key=str(data["SecretAccessKey"]),
            session_token=str(data["SessionToken"]),
            expiration=parse_expiration(str(data["Expiration"])),
            account_id=str(data.get("AccountId") or ""),
            role_arn=role_arn,
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        # Never quote the output: it may hold a secret.
        raise SourceError(
            "FetchOutputInvalid", f"sidecred fetch printed no credential_process JSON ({exc!r:.80})"
        ) from None


def parse_fetch_error(stderr: bytes) -> SourceError | None:
    """The error `sidecred fetch` logged on its stderr (its last `fetch_failed` line), if any."""
    for line in reversed(stderr.decode("utf-8", "replace").splitlines()):
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("event") == FETCH_FAILED_EVENT:
            return SourceError(
                str(record.get("code") or "Unknown"),
                str(record.get("error") or ""),
                refused=record.get("refused") is True,
            )
    return None
