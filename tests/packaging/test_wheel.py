"""The wheel as a user gets it: built, installed into a fresh venv, run from elsewhere.

Nothing here imports the checkout: every command runs the venv's own `sidecred`
console script with the working directory outside the repository, so a file
the wheel forgot (the demo's examples) or a dependency only an extra brings
(the demo's moto and boto3) shows up as it would for a user. The venv starts
without extras; the last test adds the demo extra.
"""

from __future__ import annotations

import email.parser
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.timeout(600), pytest.mark.slow]


def uv() -> str:
    found = shutil.which("uv")
    if found is None:
        pytest.fail("uv is not installed: pip install -e '.[test]'")
    return found


def run(*command: str | Path, cwd: Path, **kwargs) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(kwargs.pop("env", {}))
    return subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        **kwargs,
    )


@dataclass
class Installed:
    wheel: Path
    venv: Path
    elsewhere: Path  # a working directory outside the checkout

    def sidecred(self, *args: str | Path) -> subprocess.CompletedProcess[str]:
        return run(self.venv / "bin" / "sidecred", *args, cwd=self.elsewhere)

    def install(self, requirement: str) -> None:
        result = run(uv(), "pip", "install", "-q", requirement, cwd=self.elsewhere,
                     env={"VIRTUAL_ENV": str(self.venv)})  # fmt: skip
        assert result.returncode == 0, result.stderr

    @property
    def examples(self) -> Path:
        found = run(self.venv / "bin" / "python", "-c",
                    "import sidecred.dev, pathlib; print(pathlib.Path(sidecred.dev.__file__).parent)",
                    cwd=self.elsewhere)  # fmt: skip
        assert found.returncode == 0, found.stderr
        return Path(found.stdout.strip()) / "examples"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    """The wheel built from this checkout, installed without extras into a fresh venv."""
    base = tmp_path_factory.mktemp("wheel")
    built = run(uv(), "build", "-q", "--wheel", "--out-dir", base / "dist", ROOT, cwd=base)
    assert built.returncode == 0, built.stderr
    (wheel,) = (base / "dist").glob("sidecred-*.whl")
    venv = base / "venv"
    created = run(uv(), "venv", "-q", "--python", sys.executable, venv, cwd=base)
    assert created.returncode == 0, created.stderr
    elsewhere = base / "elsewhere"
    elsewhere.mkdir()
    result = Installed(wheel, venv, elsewhere)
    result.install(str(wheel))
    yield result


def test_wheel_holds_only_the_sidecred_package_and_its_metadata(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as wheel:
        names = wheel.namelist()
        (metadata_name,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        metadata = email.parser.Parser().parsestr(wheel.read(metadata_name).decode())
    assert {name.split("/")[0] for name in names} == {"sidecred", metadata_name.split("/")[0]}
    for package in ("webhook", "sidecar", "certs", "dev"):
        assert f"sidecred/{package}/__init__.py" in names
    for example in ("pod-allowed.yaml", "pod-denied.yaml", "namespace-shop.yaml"):
        assert f"sidecred/dev/examples/{example}" in names
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)
    assert metadata["License-Expression"] == "Apache-2.0"
    assert metadata.get_all("Classifier") and metadata.get_all("Project-URL")
    runtime = [r for r in metadata.get_all("Requires-Dist") if "extra ==" not in r]
    assert not any(r.startswith("boto3") for r in runtime), runtime
    assert any(
        r.startswith("boto3") and 'extra == "demo"' in r for r in metadata.get_all("Requires-Dist")
    )


def test_the_installed_package_is_not_the_checkout(installed: Installed) -> None:
    where = run(installed.venv / "bin" / "python", "-c", "import sidecred; print(sidecred.__file__)",
                cwd=installed.elsewhere)  # fmt: skip
    assert Path(where.stdout.strip()).is_relative_to(installed.venv), where.stdout
    assert (
        not installed.examples.is_symlink() and (installed.examples / "pod-allowed.yaml").is_file()
    )


def test_webhook_help_runs(installed: Installed) -> None:
    result = installed.sidecred("webhook", "--help")
    assert result.returncode == 0, result.stderr
    assert "--tls-cert" in result.stdout


def test_check_reads_the_shipped_examples(installed: Installed) -> None:
    examples = installed.examples
    result = installed.sidecred("check", "-q", "-f", examples / "pod-shop-reader.yaml",
                                "--namespace", examples / "namespace-shop.yaml")  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == "Deployment/shop-reader in shop: allowed (injected)\n"


def test_demo_without_its_extra_says_so_in_one_line(installed: Installed) -> None:
    result = installed.sidecred("demo")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    assert "pip install 'sidecred[demo]'" in result.stderr
    assert "Traceback" not in result.stderr


def test_demo_runs_from_the_wheel_with_its_extra(installed: Installed) -> None:
    installed.install(f"sidecred[demo] @ {installed.wheel.as_uri()}")
    result = installed.sidecred("demo")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "every step behaved as expected" in result.stdout


def test_the_wheel_ships_the_kubectl_plugin(installed: Installed) -> None:
    """`kubectl-sidecred` is installed where kubectl finds plugins (next to `sidecred`)."""
    plugin = installed.venv / "bin" / "kubectl-sidecred"
    result = run(plugin, "--help", cwd=installed.elsewhere)
    assert result.returncode == 0, result.stderr
    assert all(f"\n    {command} " in result.stdout for command in ("check", "status", "audit"))
    usage = run(plugin, "audit", "--kubeconfig", installed.elsewhere / "none", cwd=installed.elsewhere)  # fmt: skip
    assert usage.returncode == 2 and "cannot load the kubeconfig" in usage.stderr
