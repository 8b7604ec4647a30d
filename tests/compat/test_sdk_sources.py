"""The README's table of SDKs not run here is rendered from tests/compat/sdk_sources.json,
where every claim carries the SDK source it was read from (repository, path, commit and
the quoted lines) or says whose statement it is."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
SOURCES = Path(__file__).with_name("sdk_sources.json")
BEGIN, END = "<!-- sdk-sources:begin -->", "<!-- sdk-sources:end -->"
# The SDKs platform teams run that this machine cannot install.
WANTED = ("Java v1", "Java v2", ".NET", "Rust", "PHP", "C++", "Kotlin")


def sdks() -> list[dict[str, Any]]:
    return json.loads(SOURCES.read_text())["sdks"]


def _source_cell(entry: dict[str, Any]) -> str:
    return "; ".join(
        f"`{s['path'].rsplit('/', 1)[-1]}` ({s['repo']} @ {s['commit'][:7]})"
        for s in entry["sources"]
    )


def render_table() -> str:
    """The Markdown table README.md shows between its sdk-sources markers."""
    lines = [
        "| SDK (from source, not run here) | `AWS_CONTAINER_CREDENTIALS_FULL_URI` over http to 127.0.0.1 | reads the token file from | basis for that version | source read |",
        "| --- | --- | --- | --- | --- |",
    ]
    for entry in sdks():
        cells = (entry["sdk"], entry["full_uri"], entry["token_file"], entry["token_file_basis"], _source_cell(entry))  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def test_readme_table_is_the_render_of_the_sources() -> None:
    readme = (REPO / "README.md").read_text()
    shown = readme.split(BEGIN, 1)[1].split(END, 1)[0].strip()
    assert shown == render_table(), "README.md's from-source SDK table is stale:\n" + render_table()


def test_every_sdk_platform_teams_run_is_covered() -> None:
    names = [entry["sdk"] for entry in sdks()]
    for wanted in WANTED:
        assert [n for n in names if re.search(rf"\b{re.escape(wanted)}\b", n) or wanted in n], (
            wanted
        )


def test_every_claim_names_its_source() -> None:
    for entry in sdks():
        assert entry["full_uri"] and entry["token_file"] and entry["token_file_basis"]
        assert entry["sources"], entry["sdk"]
        for source in entry["sources"]:
            assert re.fullmatch(r"[\w.-]+/[\w.-]+", source["repo"])
            assert re.fullmatch(r"[0-9a-f]{40}", source["commit"])
            assert source["path"] and source["quotes"] and all(q.strip() for q in source["quotes"])
