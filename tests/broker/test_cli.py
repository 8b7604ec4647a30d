"""`sidecred broker` refuses to start without what it needs, saying why (exit 2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sidecred.broker.serve_cli import build_parser, main
from tests.webhook_server.webhook_process import write_kubeconfig

from .broker_process import issue_certificates


def test_the_default_port_is_8444() -> None:
    parser = build_parser()
    assert parser.parse_args(["--tls-cert", "c", "--tls-key", "k"]).port == 8444
    assert "listen port (default 8444)" in parser.format_help()


def start(tmp_path: Path, *options: str) -> list[str]:
    issue_certificates(tmp_path / "tls")
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig.json", "http://127.0.0.1:9")
    return [
        *("--tls-cert", str(tmp_path / "tls" / "tls.crt")),
        *("--tls-key", str(tmp_path / "tls" / "tls.key")),
        *("--kubeconfig", str(kubeconfig)),
        *options,
    ]


@pytest.mark.parametrize(
    ("options", "words"),
    [
        (("--credential-source", "web-identity"), "--credential-source is 'web-identity'"),
        (("--credential-source", "broker"), "needs --broker-url"),
    ],
)
def test_a_broker_without_the_broker_mode_options_does_not_start(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    options: tuple[str, ...],
    words: str,
) -> None:
    for name in ("SIDECRED_CREDENTIAL_SOURCE", "SIDECRED_BROKER_URL", "SIDECRED_BROKER_CA_FILE"):
        monkeypatch.delenv(name, raising=False)
    assert main(start(tmp_path, *options)) == 2
    err = capsys.readouterr().err
    assert err.startswith("sidecred broker: ") and words in err


def test_an_unreadable_certificate_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ca = str(tmp_path / "tls" / "ca.crt")
    args = start(tmp_path, "--credential-source", "broker", "--broker-url", "https://localhost:1")
    args += ["--broker-ca-file", ca]
    args[args.index("--tls-cert") + 1] = str(tmp_path / "missing.crt")
    assert main(args) == 2
    assert "cannot load --tls-cert" in capsys.readouterr().err
