"""Namespace policy checked when it is written. Pure.

A Namespace CREATE/UPDATE whose annotations carry a role policy is refused
when the policy does not parse (it would deny every pod there), with the very
message admission would give those pods, and allowed with a warning when it
parses but permits more than it seems to: a `.` that crosses `/` into deeper
role paths, every role in an account, or a role in every account.

"Permits more" is decided by asking the compiled RE2 matcher about probe
ARNs, never by reading the pattern: a witness ARN the policy permits is built
from the pattern (its shortest match, and one where each repeated `.` spans a
`/`), then varied. A pattern the witness builder cannot read gives no
warning, never a false one.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sidecred.pods.annotations import q
from sidecred.pods.pod import is_core_request
from sidecred.pods.policy import (
    ALLOWED_ROLES_KEY,
    PERMITTED_KEY,
    Compilers,
    evaluate_policy,
    parse_allowed_roles,
    parse_permitted,
)
from sidecred.pods.settings import Settings
from sidecred.webhook.decide import Decision
from sidecred.webhook.pattern_witness import DIGITS, SHORTEST, SPAN_SLASH, witnesses

POLICY_KEYS = (PERMITTED_KEY, ALLOWED_ROLES_KEY)
# Any role ARN serves: a bad policy is refused whatever the role.
_ANY_ROLE = "arn:aws:iam::111122223333:role/sidecred-namespace-review"
PROBE_ROLE_NAME = "sidecredprobe7"  # a name no policy lists on purpose, in any name class
PROBE_ACCOUNTS = ("012345678901", "109876543210")  # two, so one differs from any witness
_ROLE_ARN = re.compile(r"arn:([a-z][a-z0-9-]*):iam::([0-9]{12}):role/(.*)")


@dataclass(frozen=True)
class NamespaceVerdict:
    """allowed, or refused with the admission message; warnings either way."""

    allowed: bool
    message: str = ""
    warnings: tuple[str, ...] = ()


def is_namespace_request(request: Mapping[str, Any]) -> bool:
    """A Namespace itself (not a subresource such as `namespaces/finalize`)."""
    return is_core_request(request, "Namespace", "namespaces") and not request.get("subResource")


def policy_annotations(obj: Mapping[str, Any] | None) -> dict[str, str]:
    """The policy annotations of a Namespace object (only those two keys)."""
    metadata = (obj or {}).get("metadata") if isinstance(obj, Mapping) else None
    annotations = metadata.get("annotations") if isinstance(metadata, Mapping) else None
    if not isinstance(annotations, Mapping):
        return {}
    return {k: str(annotations[k]) for k in POLICY_KEYS if k in annotations}


def review_namespace(
    obj: Mapping[str, Any], old: Mapping[str, Any] | None, config: Settings
) -> NamespaceVerdict:
    """Refuse an unparsable policy, warn about a risky one, allow the rest.

    An UPDATE that leaves an already unusable policy as it was is allowed with a
    warning: refusing it would block unrelated edits (labels, other annotations)
    of a namespace whose owner may be about to fix it.
    """
    annotations = policy_annotations(obj)
    if not annotations:
        return NamespaceVerdict(True)
    name = str(((obj.get("metadata") or {}).get("name")) or "")
    # The caller wrote these patterns: compiled for this review alone, each once.
    compilers = Compilers(
        functools.lru_cache(maxsize=1)(parse_permitted),
        functools.lru_cache(maxsize=1)(parse_allowed_roles),
    )
    result = evaluate_policy(_ANY_ROLE, name, annotations, config.base_role_arn, compilers)
    if result.reason == "bad-policy":
        if old is not None and policy_annotations(old) == annotations:
            return NamespaceVerdict(True, warnings=(result.message,))
        return NamespaceVerdict(False, result.message)
    warnings: list[str] = []
    if PERMITTED_KEY in annotations:
        matcher = compilers.permitted(annotations[PERMITTED_KEY])
        warnings += risky_pattern_warnings(PERMITTED_KEY, matcher)
    if ALLOWED_ROLES_KEY in annotations:
        matcher = compilers.allowed_roles(annotations[ALLOWED_ROLES_KEY], config.base_role_arn)
        warnings += risky_pattern_warnings(ALLOWED_ROLES_KEY, matcher)
    prefix = f"sidecred: namespace {q(name)}: "
    return NamespaceVerdict(True, warnings=tuple(prefix + w for w in warnings))


def decide_namespace(request: Mapping[str, Any], config: Settings) -> Decision:
    """The /validate answer for a Namespace CREATE/UPDATE (parse_review checked the shape)."""
    if request.get("operation") not in ("CREATE", "UPDATE"):
        return Decision(allowed=True, reason="skipped")
    old = request.get("oldObject") if request.get("operation") == "UPDATE" else None
    verdict = review_namespace(request.get("object") or {}, old, config)
    if not verdict.allowed:
        return Decision(allowed=False, code=403, message=verdict.message, reason="bad-policy")
    reason = "risky-policy" if verdict.warnings else "allowed"
    return Decision(allowed=True, warnings=verdict.warnings, reason=reason)


def with_namespace_review(decide: Callable[..., Decision]) -> Callable[..., Decision]:
    """`decide` (the pod validation) with Namespace requests answered by decide_namespace."""

    def decide_validation(
        request: Mapping[str, Any],
        namespace: Mapping[str, Any] | None,
        config: Settings,
        **kwargs: Any,
    ) -> Decision:
        if is_namespace_request(request):
            return decide_namespace(request, config)
        return decide(request, namespace, config, **kwargs)

    return decide_validation


# --- what a pattern also permits -------------------------------------------------


def _crosses_slash(key: str, matcher: Any, base_role: str, spanning: str) -> list[str]:
    found = _ROLE_ARN.fullmatch(spanning)
    if not (found and matcher.fullmatch(spanning)):
        return []
    if found.group(3).count("/") <= base_role.count("/"):
        return []
    return [
        f"{key} lets a '.' match '/', so it also permits roles in deeper paths, such as "
        f"{q(spanning)}; use [^/] to stay within one path segment"
    ]


def risky_pattern_warnings(key: str, matcher: Any) -> list[str]:
    """What a compiled policy also permits, as sentences; [] when nothing risky is found."""
    built = witnesses(matcher.pattern)
    base = next(
        (
            found
            for w in (built.get(SHORTEST), built.get(DIGITS))
            if w is not None and matcher.fullmatch(w) and (found := _ROLE_ARN.fullmatch(w))
        ),
        None,
    )
    partition, account, role = base.groups() if base else ("aws", PROBE_ACCOUNTS[0], "")
    warnings = _crosses_slash(key, matcher, role, built.get(SPAN_SLASH, ""))
    any_role = f"arn:{partition}:iam::{account}:role/{PROBE_ROLE_NAME}"
    other = next(a for a in PROBE_ACCOUNTS if a != account)
    elsewhere = f"arn:{partition}:iam::{other}:role/{role or PROBE_ROLE_NAME}"
    every_role, every_account = (
        bool(matcher.fullmatch(any_role)),
        bool(matcher.fullmatch(elsewhere)),
    )
    if every_role and every_account and base is None:
        return [*warnings, f"{key} permits every role in every AWS account"]
    if every_role:
        warnings.append(f"{key} permits every role in account {account}, such as {q(any_role)}")
    if every_account:
        warnings.append(f"{key} permits roles in every AWS account, such as {q(elsewhere)}")
    return warnings


__all__ = [
    "NamespaceVerdict",
    "decide_namespace",
    "is_namespace_request",
    "review_namespace",
    "risky_pattern_warnings",
    "with_namespace_review",
]
