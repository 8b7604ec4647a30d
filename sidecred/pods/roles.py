"""Role resolution: turn a pod's role annotation into a full IAM role ARN.

The annotation holds a full ARN (any partition, any account: cross-account
roles are the point) or a role name, optionally with a path (`team/reader`),
appended to --base-role-arn. Everything else is refused with a message that
says what a valid value looks like.
"""

from __future__ import annotations

import re

from sidecred.pods.annotations import ROLE_KEY, q

# IAM role names: 1-64 of [\w+=,.@-]; path segments use the same characters
# (stricter than IAM's printable-ASCII paths, so no glob or regex metacharacter
# ever reaches the policy matchers from a pod annotation).
_NAME = r"[A-Za-z0-9_+=,.@-]{1,64}"
_SEGMENT = r"[A-Za-z0-9_+=,.@-]+"
ROLE_NAME_RE = re.compile(rf"(?:{_SEGMENT}/)*{_NAME}")
ROLE_ARN_RE = re.compile(
    rf"arn:[a-z][a-z0-9-]{{0,31}}:iam::[0-9]{{12}}:role/(?:{_SEGMENT}/)*{_NAME}"
)
MAX_ROLE_ARN_CHARS = 2048  # IAM's limit on an ARN


class RoleError(ValueError):
    """An annotation value that is not a usable role; the message says why."""


def is_role_arn(value: str) -> bool:
    return value.startswith("arn:")


def resolve_role(value: str, base_role_arn: str | None, key: str = ROLE_KEY) -> str:
    """Return the full role ARN for an annotation value, or raise RoleError.

    `base_role_arn` is the validated prefix from Settings (ends with "/").
    """
    shown = q(value)
    if not value:
        raise RoleError(f"annotation {key} is empty; set a role name or a role ARN")
    if value != value.strip() or any(c.isspace() or not c.isprintable() for c in value):
        raise RoleError(f"annotation {key}={shown} contains whitespace or control characters")
    if is_role_arn(value):
        if len(value) > MAX_ROLE_ARN_CHARS or not ROLE_ARN_RE.fullmatch(value):
            raise RoleError(
                f"annotation {key}={shown} is not an IAM role ARN "
                "(expected arn:<partition>:iam::<12-digit account>:role/<optional path/><name>)"
            )
        return value
    if not ROLE_NAME_RE.fullmatch(value) or len(value) > MAX_ROLE_ARN_CHARS:
        raise RoleError(
            f"annotation {key}={shown} is not a role name "
            "(expected <optional path/><name> of letters, digits and _+=,.@-, or a full role ARN)"
        )
    if base_role_arn is None:
        raise RoleError(
            f"annotation {key}={shown} is a role name, but the webhook has no --base-role-arn "
            "to resolve it; use a full role ARN"
        )
    return base_role_arn + value
