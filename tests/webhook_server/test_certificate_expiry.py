"""The serving certificate's expiry: the metric, and the warning 30 days before."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from cryptography import x509

from sidecred.certs.cli import main as certs_main
from sidecred.serving.tls import ReloadingServerContext, expiry_warning
from tests.webhook_server.webhook_process import start_webhook

DAY = 86400.0
SNI = {"sni_hostname": "sidecred.sidecred-system.svc"}
ARGS = ["--service", "sidecred", "--namespace", "sidecred-system"]


def issue(out: Path, days: int) -> float:
    """Issue a serving certificate valid `days`; return its expiry (Unix time).

    The command sets up its own logging (root handlers replaced), which would drop
    pytest's capture handler in mid-test: the process's logging is put back after it.
    """
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        assert certs_main([*ARGS, "--out", str(out), "--days", str(days)]) == 0
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    return x509.load_pem_x509_certificate(
        (out / "tls.crt").read_bytes()
    ).not_valid_after_utc.timestamp()


@pytest.mark.parametrize(
    ("days_left", "expected"),
    [
        (31, None),
        (30.5, None),
        (29.5, "expires in 29.5 days"),
        (0.25, "expires in 0.2 days"),
        (-1, "has expired"),
    ],
)
def test_expiry_warning_starts_30_days_before(days_left: float, expected: str | None) -> None:
    warning = expiry_warning(1_000 * DAY + days_left * DAY, 1_000 * DAY)
    assert (warning is None) if expected is None else (expected in (warning or ""))


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_reloading_context_tracks_expiry_and_warns_once_a_day(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    not_after = issue(tmp_path, days=10)
    monotonic, wall = Clock(0.0), Clock(not_after - 10 * DAY)
    tls = ReloadingServerContext(tmp_path / "tls.crt", tmp_path / "tls.key", check_interval=1.0,
                                 clock=monotonic, wall_clock=wall)  # fmt: skip
    assert tls.not_after == not_after
    with caplog.at_level(logging.WARNING, logger="sidecred.serving.tls"):
        for _ in range(3):  # three checks within the same day
            monotonic.now += 2.0
            tls.current_context()
        assert [r.getMessage() for r in caplog.records] == [
            "the TLS serving certificate expires in 10.0 days; renew it (sidecred certs or cert-manager)"
        ]
        renewed = issue(tmp_path, days=365)  # a renewal from the kept CA is picked up
        monotonic.now += 2.0
        wall.now += DAY
        tls.current_context()
        assert tls.not_after == renewed > not_after
        assert len(caplog.records) == 1  # a year left: no more warnings


def test_webhook_exports_the_expiry_metric(tmp_path: Path) -> None:
    from tests.webhook_server.conftest import start_stub

    stub = start_stub()
    try:
        webhook = start_webhook(tmp_path, stub.url)
        try:
            with webhook.client() as http:
                metrics = http.get("/metrics", extensions=SNI).text
        finally:
            webhook.stop()
    finally:
        stub.stop()
    tls_crt = next(tmp_path.rglob("tls.crt"))
    expected = x509.load_pem_x509_certificate(tls_crt.read_bytes()).not_valid_after_utc.timestamp()
    line = next(
        line
        for line in metrics.splitlines()
        if line.startswith("sidecred_certificate_expiry_timestamp_seconds ")
    )
    assert float(line.split()[1]) == expected
