"""Run the `sh` blocks of an operator's guide with bash, as written, without a cluster.

`sidecred` is the real command. `helm`, `kubectl`, `aws`, `skopeo` and `docker` are
tests/deploy/guide_shims.py: Helm's engine renders the chart, the real kubectl builds
Secrets with `--dry-run=client`, and everything that needs a cluster or the network is
logged for the test to judge. The working directory is a temporary one in which
`deploy` is this repository's, so the guides' relative paths hold.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploy import render

REPO = render.DEPLOY_DIR.parent
SHIMMED = ("helm", "kubectl", "aws", "skopeo", "docker")
_BLOCK = re.compile(r"^( *)```sh\n(.*?)^\1```", re.M | re.S)


@dataclass(frozen=True)
class Block:
    heading: str
    text: str


def sh_blocks(guide: Path) -> list[Block]:
    """Every ```sh block of a Markdown file, dedented, with the heading it is under."""
    text = guide.read_text()
    prose = _BLOCK.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), text)  # same offsets
    blocks = []
    for match in _BLOCK.finditer(text):
        headings = re.findall(r"^#+ (.+)$", prose[: match.start()], re.M)
        body = textwrap.dedent(match.group(2))
        blocks.append(Block(headings[-1] if headings else "", body))
    return blocks


class GuideShell:
    """One working directory and state in which blocks run one after another."""

    def __init__(self, root: Path, substitutions: dict[str, str] | None = None) -> None:
        self.cwd = root / "work"
        self.state = root / "state"
        self.bin = root / "bin"
        for path in (self.cwd, self.state, self.bin):
            path.mkdir(parents=True)
        (self.cwd / "deploy").symlink_to(render.DEPLOY_DIR)
        self.substitutions = substitutions or {}
        real_kubectl = shutil.which("kubectl")
        assert real_kubectl, "kubectl (the client only) runs the guides' Secret commands"
        self.env = {
            **os.environ,
            "PATH": f"{self.bin}{os.pathsep}{os.environ['PATH']}",
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
            "GUIDE_STATE": str(self.state),
            "GUIDE_REAL_KUBECTL": real_kubectl,
            "KUBECONFIG": str(root / "no-cluster"),
        }
        for program in SHIMMED:
            self._script(
                program, f'exec "{sys.executable}" -m tests.deploy.guide_shims {program} "$@"'
            )
        self._script("sidecred", f'exec "{sys.executable}" -m sidecred.cli "$@"')

    def _script(self, name: str, line: str) -> None:
        path = self.bin / name
        path.write_text(f"#!/bin/sh\n{line}\n")
        path.chmod(path.stat().st_mode | stat.S_IXUSR)

    def write(self, name: str, text: str) -> Path:
        """A file the guide expects the operator to have (a credentials file, ...)."""
        path = self.cwd / name
        path.write_text(text)
        return path

    def run(self, block: Block) -> subprocess.CompletedProcess[str]:
        text = block.text
        for placeholder, value in self.substitutions.items():
            text = re.sub(placeholder, value, text)
        return subprocess.run(
            ["bash", "-c", "set -eo pipefail\n" + text],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def run_ok(self, block: Block) -> str:
        result = self.run(block)
        assert result.returncode == 0, f"{block.heading}:\n{block.text}\n{result.stderr}"
        return result.stdout

    def log(self) -> list[dict[str, Any]]:
        path = self.state / "log.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines()]

    def preload_release(self, name: str, namespace: str, values: dict[str, Any]) -> None:
        """A release as an earlier install left it (for upgrade paths)."""
        path = self.state / "releases" / f"{name}.json"
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps({"namespace": namespace, "values": values, "objects": []}))
