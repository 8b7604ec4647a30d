"""Output the way `kubectl get` prints it: a borderless table, or `-o json|yaml` for scripts."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

OUTPUT_FORMATS = ("table", "json", "yaml")
NONE = "<none>"  # kubectl's marker for an empty cell


def cell(value: Any) -> str:
    """One table cell; a mapping as `key=value,...` with kubectl's marker for empty values."""
    if isinstance(value, Mapping):
        return (
            ",".join(f"{k}={v if v not in (None, '') else NONE}" for k, v in value.items()) or NONE
        )
    return str(value) if value not in (None, "") else NONE


def render_table(columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> str:
    """Uppercase headers, left-aligned columns three spaces apart, one row per object."""
    cells = [[cell(row.get(c)) for c in columns] for row in rows]
    headers = [c.upper().replace("_", " ") for c in columns]
    widths = [max(len(x) for x in column) for column in zip(headers, *cells, strict=True)]
    lines = ["   ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip() for line in [headers, *cells]]  # fmt: skip
    return "\n".join(lines) + "\n"


def render(
    kind: str, columns: Sequence[str], rows: Sequence[Mapping[str, Any]], output: str
) -> str:
    """`rows` as a table, or as a `List` of `kind` items in JSON or YAML."""
    if output == "table":
        return render_table(columns, rows) if rows else "No resources found.\n"
    document = {"apiVersion": "sidecred.dev/v1", "kind": "List", "items": [{"kind": kind, **row} for row in rows]}  # fmt: skip
    if output == "json":
        return json.dumps(document, indent=2) + "\n"
    return yaml.safe_dump(document, sort_keys=False)
