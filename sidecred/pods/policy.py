"""Namespace policy: may a namespace's pods use a role?

Two namespace annotations, the ones kiam and kube2iam users already have:

- `iam.amazonaws.com/permitted`: an RE2 regular expression full-matched
  against the resolved role ARN (kiam v4), so `shop-.*` never permits
  `.../role/evil-shop-x`;
- `iam.amazonaws.com/allowed-roles`: a JSON array of role names or ARNs where
  `*` is a glob that never crosses `/` (kube2iam); names are resolved with the
  base ARN.

A role is permitted if either annotation permits it. RE2 runs in linear time
and its memory is capped, so a hostile pattern or a huge annotation is
decided quickly.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import NamedTuple

import re2

from sidecred.pods.annotations import (
    ALLOWED_ROLES_KEY,
    CONTAINER_ROLES_KEY,
    PERMITTED_KEY,
    QUOTED_CHARS,
    q,
)
from sidecred.pods.roles import RoleError, resolve_role

# Caps that keep evaluation cheap whatever a namespace owner writes. Real
# policies are a few hundred characters; these leave room for long lists.
MAX_PATTERN_CHARS = 16 * 1024
MAX_ALLOWED_ROLES = 1000
RE2_MAX_MEM = 8 * 1024 * 1024  # bytes RE2 may use for one compiled program


class PolicyError(ValueError):
    """An unparsable policy annotation; the message names the annotation and the error."""


@dataclass(frozen=True)
class PolicyResult:
    """The outcome for one role in one namespace.

    reason: permitted | not-permitted | no-policy | bad-policy (with --namespace-policy off
    the policy is never evaluated)
    """

    permitted: bool
    reason: str
    message: str = ""


def _options() -> re2.Options:
    options = re2.Options()
    options.max_mem = RE2_MAX_MEM
    options.log_errors = False  # the error goes into the denial, not into stderr
    return options


def _compile(key: str, pattern: str, *, check_length: bool = True) -> re2._Regexp:
    if check_length and len(pattern) > MAX_PATTERN_CHARS:
        raise PolicyError(f"{key} is {len(pattern)} characters; the limit is {MAX_PATTERN_CHARS}")
    try:
        pattern.encode("utf-8")
    except UnicodeEncodeError as exc:
        # A lone surrogate (a \ud800 escape in JSON) has no UTF-8 form, and RE2 takes UTF-8.
        raise PolicyError(
            f"{key}={q(pattern)} is not valid Unicode text: {exc.reason} at {exc.start}"
        ) from None
    try:
        # Not re2.compile: it keeps the last 128 patterns it compiled, up to RE2_MAX_MEM
        # each, in a cache of its own, and a pattern a caller sends must not stay.
        return re2._Regexp(pattern, _options())
    except re2.error as exc:
        detail = exc.args[0] if exc.args else exc
        if isinstance(detail, bytes):
            detail = detail.decode("utf-8", "replace")
        raise PolicyError(f"{key}={q(pattern)} is not a valid RE2 expression: {detail}") from None


def parse_permitted(pattern: str) -> re2._Regexp:
    """Compile a permitted annotation."""
    return _compile(PERMITTED_KEY, pattern)


def glob_to_re2(glob: str) -> str:
    """Translate a role glob: `*` matches any run of characters except `/`; nothing else is special."""
    return "[^/]*".join(re2.escape(part) for part in glob.split("*"))


def parse_allowed_roles(raw: str, base_role_arn: str | None) -> re2._Regexp:
    """Parse and compile an allowed-roles annotation into one RE2 alternation."""
    if len(raw) > MAX_PATTERN_CHARS:
        raise PolicyError(
            f"{ALLOWED_ROLES_KEY} is {len(raw)} characters; the limit is {MAX_PATTERN_CHARS}"
        )
    try:
        entries = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise PolicyError(
            f"{ALLOWED_ROLES_KEY}={q(raw)} is not a JSON array of role names or ARNs: {exc}"
        ) from None
    if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
        raise PolicyError(
            f"{ALLOWED_ROLES_KEY}={q(raw)} is not a JSON array of role names or ARNs (strings)"
        )
    if len(entries) > MAX_ALLOWED_ROLES:
        raise PolicyError(
            f"{ALLOWED_ROLES_KEY} lists {len(entries)} roles; the limit is {MAX_ALLOWED_ROLES}"
        )
    alternatives = []
    for entry in entries:
        if not entry or any(c.isspace() or not c.isprintable() for c in entry):
            raise PolicyError(
                f"{ALLOWED_ROLES_KEY} entry {q(entry)} is empty or contains whitespace"
            )
        if not entry.startswith("arn:"):
            if base_role_arn is None:
                raise PolicyError(
                    f"{ALLOWED_ROLES_KEY} entry {q(entry)} is a role name, but the webhook "
                    "has no --base-role-arn to resolve it; use full role ARNs"
                )
            entry = base_role_arn + entry
        alternatives.append(f"(?:{glob_to_re2(entry)})")
    if not alternatives:
        # An empty list permits nothing; "(?!)" is not RE2, so use an impossible class.
        alternatives.append("[^\\x00-\\x{10FFFF}]")
    # The raw annotation was capped above; the alternation built from it is longer (each
    # name gains the base ARN), so capping it again would refuse lists within the limits.
    return _compile(ALLOWED_ROLES_KEY, "|".join(alternatives), check_length=False)


class Compilers(NamedTuple):
    """How a policy's annotations become matchers: `parse_permitted`, `parse_allowed_roles`."""

    permitted: Callable[[str], re2._Regexp]
    allowed_roles: Callable[[str, str | None], re2._Regexp]


# The policies of the cluster's namespaces, compiled once: admissions repeat them. Only
# policies read from the API server go here; a policy a caller sends (a Namespace review)
# is compiled for that request alone (`Compilers(parse_permitted, parse_allowed_roles)`),
# or 512 callers' patterns of up to RE2_MAX_MEM each would stay in memory.
compile_permitted = functools.lru_cache(maxsize=512)(parse_permitted)
compile_allowed_roles = functools.lru_cache(maxsize=512)(parse_allowed_roles)
CACHED = Compilers(compile_permitted, compile_allowed_roles)


def describe_policy(annotations: Mapping[str, str]) -> str:
    """The policy annotations as `key="value"` pairs, for denial messages."""
    parts = []
    if PERMITTED_KEY in annotations:
        parts.append(f"{PERMITTED_KEY}={q(annotations[PERMITTED_KEY])}")
    if ALLOWED_ROLES_KEY in annotations:
        # Already JSON: shown as written, so quotes inside it stay readable.
        value = annotations[ALLOWED_ROLES_KEY]
        cut = value[:QUOTED_CHARS] + ("..." if len(value) > QUOTED_CHARS else "")
        parts.append(f"{ALLOWED_ROLES_KEY}={cut}")
    return "; ".join(parts)


def for_container(message: str, container: str) -> str:
    """A policy message about a container's own role: it names the container and where its
    role comes from, after the "sidecred: " every message starts with."""
    where = f"sidecred: container {q(container)} ({CONTAINER_ROLES_KEY}): "
    return where + message.removeprefix("sidecred: ")


def withheld_denial(role_arn: str, namespace_name: str) -> str:
    """A policy denial that names the role, the namespace and the annotations to read,
    but neither their value nor whether they are missing or unusable: any caller of
    the webhook can ask about any namespace."""
    return (
        f"sidecred: role {q(role_arn)} is not permitted in namespace {q(namespace_name)} "
        f"(its {PERMITTED_KEY} or {ALLOWED_ROLES_KEY} annotation decides; "
        "kubectl sidecred check -f pod.yaml shows why)"
    )


def evaluate_policy(
    role_arn: str,
    namespace_name: str,
    namespace_annotations: Mapping[str, str],
    base_role_arn: str | None,
    compilers: Compilers = CACHED,
) -> PolicyResult:
    """Decide whether `role_arn` is permitted in the namespace by its annotations."""
    permitted_raw = namespace_annotations.get(PERMITTED_KEY)
    allowed_raw = namespace_annotations.get(ALLOWED_ROLES_KEY)
    ns = q(namespace_name)
    if permitted_raw is None and allowed_raw is None:
        return PolicyResult(
            False,
            "no-policy",
            f"sidecred: namespace {ns} has no role policy, so role {q(role_arn)} is not "
            f"permitted; annotate the namespace with {PERMITTED_KEY} (a regular expression) or "
            f"{ALLOWED_ROLES_KEY} (a JSON array)",
        )
    try:
        matchers = []
        if permitted_raw is not None:
            matchers.append(compilers.permitted(str(permitted_raw)))
        if allowed_raw is not None:
            matchers.append(compilers.allowed_roles(str(allowed_raw), base_role_arn))
    except PolicyError as exc:
        return PolicyResult(
            False, "bad-policy", f"sidecred: namespace {ns} has an unusable role policy: {exc}"
        )
    if any(m.fullmatch(role_arn) for m in matchers):
        return PolicyResult(True, "permitted")
    return PolicyResult(
        False,
        "not-permitted",
        f"sidecred: role {q(role_arn)} is not permitted in namespace {ns}: "
        + describe_policy(namespace_annotations),
    )


__all__ = [
    "ALLOWED_ROLES_KEY",
    "PERMITTED_KEY",
    "PolicyError",
    "PolicyResult",
    "RoleError",
    "evaluate_policy",
    "glob_to_re2",
    "resolve_role",
    "withheld_denial",
]
