"""The chart README documents every value, and nothing that is not a value."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from deploy import render

README = render.CHART_DIR / "README.md"
# Values holding Kubernetes objects or free maps: documented as a whole.
OPAQUE = {
    "global",
    "resources",
    "affinity",
    "podSecurityContext",
    "containerSecurityContext",
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


FIXTURES = Path(__file__).parent / "fixtures"


def _mentioned() -> set[str]:
    """Every value-shaped name in backticks anywhere in the chart README."""
    return set(re.findall(r"`([A-Za-z][\w]*(?:\.[A-Za-z]\w*)*)`", README.read_text()))


def test_readme_mentions_no_value_that_is_gone() -> None:
    """A value chart 0.1.0 had and this chart does not (`sidecarImage`, ...) appears
    nowhere in the chart README: prose that names one sends operators to a value the
    schema refuses."""
    old = _paths(yaml.safe_load((FIXTURES / "chart-0.1.0-values.yaml").read_text()))
    values = yaml.safe_load((render.CHART_DIR / "values.yaml").read_text())
    current = _paths(values)
    prefixes = {p.rsplit(".", 1)[0] for p in current if "." in p}
    gone = old - current - prefixes
    assert {"sidecarImage", "sidecarMode", "namespace.create"} <= gone
    stale = sorted(_mentioned() & gone)
    assert not stale, f"{README.name} names values that no longer exist: {stale}"
