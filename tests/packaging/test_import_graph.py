"""The static import graph: every `sidecred.*` import names a file under sidecred/, and
the packages depend on each other only in the directions docs/architecture.md gives."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "sidecred"
SOURCES = sorted(p for top in ("sidecred", "tests", "bench") for p in (ROOT / top).rglob("*.py"))


def imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, module) for each absolute `sidecred` import in the file, nested ones too."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
            names += [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        yield from ((node.lineno, name) for name in names if name.split(".")[0] == "sidecred")


def module_file(name: str) -> Path | None:
    """The file a module name resolves to, read from the tree alone; None if there is none."""
    base = ROOT.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file() and not any(p.is_symlink() for p in candidate.parents):
            return candidate
    return None


def is_name_in(name: str) -> bool:
    """`from sidecred.a import b` where b is a name defined in sidecred/a(.py|/__init__.py)."""
    parent = module_file(name.rpartition(".")[0])
    return parent is not None and name.rpartition(".")[2] in parent.read_text(encoding="utf-8")


def test_every_sidecred_import_resolves_to_its_file() -> None:
    unresolved = [
        f"{path.relative_to(ROOT)}:{line}: {name}"
        for path in SOURCES
        for line, name in imports(path)
        if module_file(name) is None and not is_name_in(name)
    ]
    assert not unresolved, unresolved


def package_imports(package: str) -> set[str]:
    """The top-level sidecred packages (or modules) that sidecred/<package> imports."""
    return {
        ".".join(name.split(".")[:2])
        for path in (PACKAGE / package).rglob("*.py")
        for _, name in imports(path)
    }


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("webhook", {"sidecred.broker"}),
        ("broker", {"sidecred.webhook"}),
        ("pods", {"sidecred.webhook", "sidecred.broker", "sidecred.kube", "sidecred.serving"}),
        ("kube", {"sidecred.webhook", "sidecred.broker"}),
        ("serving", {"sidecred.webhook", "sidecred.broker", "sidecred.pods", "sidecred.kube"}),
    ],
)
def test_peers_do_not_import_each_other(package: str, forbidden: set[str]) -> None:
    assert package_imports(package) & forbidden == set()


def test_the_sidecar_imports_only_itself_and_three_small_helpers() -> None:
    allowed = {
        "sidecred.sidecar",
        "sidecred.int_range",
        "sidecred.json_setting",
        "sidecred.jsonlog",
    }
    assert package_imports("sidecar") <= allowed


def test_the_serving_sidecar_loads_no_heavy_standard_modules() -> None:
    """`typing`, `dataclasses` and `inspect` each cost every pod's sidecar memory (1-2 MB);
    the serving process and its fetch child import none of them."""
    probe = (
        "import sys, sidecred.sidecar.main, sidecred.sidecar.runtime, sidecred.sidecar.fetch;"
        "print(sorted({'typing', 'dataclasses', 'inspect'} & set(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == "[]"
