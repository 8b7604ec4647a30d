"""The chart README documents every value, and nothing that is not a value."""

from __future__ import annotations

import re
from typing import Any

import yaml

from deploy import render

README = render.CHART_DIR / "README.md"
# Values holding Kubernetes objects or free maps: documented as a whole.
OPAQUE = {
    "global",
    "resources",
    "affinity",
    "nodeSelector",
    "podAnnotations",
    "podLabels",
    "namespaceLabels",
    "annotations",
    "labels",
}


def _paths(values: dict[str, Any], prefix: str = "") -> set[str]:
    paths = set()
    for key, value in values.items():
        path = prefix + key
        if isinstance(value, dict) and value and key not in OPAQUE:
            paths |= _paths(value, path + ".")
        else:
            paths.add(path)
    return paths


def _documented() -> set[str]:
    section = README.read_text().split("\n## Values\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    cells = [row.split("|")[1] for row in rows]
    return {name for cell in cells for name in re.findall(r"`([A-Za-z][\w.]*)`", cell)}


def test_readme_lists_every_value() -> None:
    values = yaml.safe_load((render.CHART_DIR / "values.yaml").read_text())
    missing = _paths(values) - _documented()
    assert not missing, f"values without a row in {README.name}: {sorted(missing)}"


def test_readme_lists_no_value_that_does_not_exist() -> None:
    values = yaml.safe_load((render.CHART_DIR / "values.yaml").read_text())
    known = _paths(values)
    prefixes = {p.rsplit(".", 1)[0] for p in known if "." in p}
    documented = {d for d in _documented() if d.split(".")[0] in values}
    assert documented <= known | prefixes, sorted(documented - known - prefixes)
