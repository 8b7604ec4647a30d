"""Each module has one import name, and its file is where that name says."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import pytest

import sidecred

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("alias", ["webhook", "sidecar", "certs", "broker"])
def test_layout_symlinks_are_not_import_names(alias: str) -> None:
    with pytest.raises(ImportError, match=f"import sidecred.{alias}"):
        importlib.import_module(f"{alias}.__init__")


def test_every_module_file_sits_at_its_import_path() -> None:
    """A static import graph resolves sidecred.a.b to sidecred/a/b.py with no mapping."""
    package_root = Path(sidecred.__file__).parent
    for info in pkgutil.walk_packages(sidecred.__path__, "sidecred."):
        module = importlib.import_module(info.name)
        assert module.__file__ is not None
        relative = Path(module.__file__).relative_to(package_root.parent)
        parts = info.name.split(".")
        expected = (
            Path(*parts, "__init__.py") if info.ispkg else Path(*parts[:-1], parts[-1] + ".py")
        )
        assert relative == expected
        assert not any(p.is_symlink() for p in [package_root / Path(*parts[1:])] if p.exists())


def test_layout_folders_link_into_the_package() -> None:
    for name in ("webhook", "sidecar", "certs", "broker"):
        link = ROOT / name
        assert link.is_symlink() and link.resolve() == (ROOT / "sidecred" / name).resolve()
