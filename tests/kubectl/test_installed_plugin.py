"""The wheel installs `kubectl-sidecred` where kubectl finds plugins (next to `sidecred`)."""

from __future__ import annotations

from tests.packaging.test_wheel import Installed, installed, run

__all__ = ["installed"]


def test_the_wheel_ships_the_kubectl_plugin(installed: Installed) -> None:
    plugin = installed.venv / "bin" / "kubectl-sidecred"
    result = run(plugin, "--help", cwd=installed.elsewhere)
    assert result.returncode == 0, result.stderr
    assert all(f"\n    {command} " in result.stdout for command in ("check", "status", "audit"))
    usage = run(plugin, "audit", "--kubeconfig", installed.elsewhere / "none", cwd=installed.elsewhere)  # fmt: skip
    assert usage.returncode == 2 and "cannot load the kubeconfig" in usage.stderr
