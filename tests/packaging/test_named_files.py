"""Every document the repository names is in it, and every section of
docs/architecture.md that code, tests or docs cite exists."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MD_NAME = re.compile(r"(?<![\w/.-])((?:[\w.-]+/)*[\w.-]+\.md)\b")
MD_LINK = re.compile(r"\]\(([^)\s#]+)(?:#[^)]*)?\)")
SECTION_CITE = re.compile(r"docs/architecture\.md,? (\d+(?:\.\d+)?)")


def tracked_text_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.decode()
    files = []
    for name in filter(None, listed.split("\0")):
        path = ROOT / name
        if path.is_file() and not path.is_symlink() and "node_modules" not in path.parts:
            try:
                path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                continue
            files.append(path)
    return files


FILES = tracked_text_files()


def exists(name: str, beside: Path) -> bool:
    return (ROOT / name).exists() or (beside.parent / name).exists()


def test_every_named_markdown_file_exists() -> None:
    missing = [
        f"{path.relative_to(ROOT)}: {name}"
        for path in FILES
        for name in MD_NAME.findall(path.read_text(encoding="utf-8"))
        if not exists(name, path)
    ]
    assert not missing, missing


def test_every_relative_link_in_the_docs_resolves() -> None:
    missing = [
        f"{path.relative_to(ROOT)}: {target}"
        for path in FILES
        if path.suffix == ".md"
        for target in MD_LINK.findall(path.read_text(encoding="utf-8"))
        if "://" not in target and not target.startswith("mailto:")
        if not (path.parent / target).exists()
    ]
    assert not missing, missing


def test_cited_architecture_sections_exist() -> None:
    text = (ROOT / "docs/architecture.md").read_text(encoding="utf-8")
    sections = set(re.findall(r"^#{2,3} (\d+(?:\.\d+)?)\. ", text, flags=re.M))
    sections |= set(re.findall(r"^#{2,3} (\d+\.\d+) ", text, flags=re.M))
    cited = {
        (str(path.relative_to(ROOT)), number)
        for path in FILES
        for number in SECTION_CITE.findall(path.read_text(encoding="utf-8"))
    }
    assert len(cited) >= 5  # the pattern still finds the citations
    assert not [cite for cite in cited if cite[1] not in sections]


def test_nothing_cites_a_design_document_outside_the_repository() -> None:
    citing = [
        str(path.relative_to(ROOT))
        for path in FILES
        if re.search(r"\bDESIGN(\.md)?\b", path.read_text(encoding="utf-8"))
        and path != Path(__file__)
    ]
    assert not citing, citing
