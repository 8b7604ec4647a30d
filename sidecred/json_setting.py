"""The one reader for settings given as JSON text (the webhook's extra env, the sidecar's
container roles): parsed, its top-level kind checked, or a problem that says which.

Standard library only: the sidecar imports it.
"""

from __future__ import annotations

import json

TYPE_CHECKING = False  # `typing` is not imported: the sidecar's serving process would pay for it
if TYPE_CHECKING:
    from typing import Any

_KIND_NAMES = {dict: "object", list: "list"}


def json_setting(
    name: str,
    text: str,
    kind: type[dict[str, Any]] | type[list[Any]],
    example: str,
    problems: list[str],
) -> Any:
    """`text` parsed as JSON when it is a `kind`; otherwise None, with a problem naming
    `name` and what a valid value looks like (`example`) appended to `problems`."""
    try:
        value = json.loads(text)
    except ValueError as exc:  # also RecursionError's message for nesting too deep
        problems.append(f"{name} is not JSON ({exc}); expected {example}")
        return None
    if not isinstance(value, kind):
        problems.append(f"{name} is not a JSON {_KIND_NAMES[kind]}; expected {example}")
        return None
    return value
