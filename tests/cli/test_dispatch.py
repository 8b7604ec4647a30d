"""The `sidecred` dispatcher: a subcommand whose code is not installed is one clear line."""

from __future__ import annotations

import pytest

from sidecred import cli


def test_a_missing_subcommand_module_is_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # What the slim sidecar image does to `sidecred webhook`: the package is not there.
    monkeypatch.setitem(cli.COMMANDS, "webhook", ("sidecred.not_installed_here", "help"))
    assert cli.main(["webhook", "--help"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "`sidecred webhook` is not part of this installation" in err
    assert "'sidecred.not_installed_here'" in err


def test_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["nope"]) == 2
    assert "unknown command 'nope'" in capsys.readouterr().err
