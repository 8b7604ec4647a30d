"""Controllable clock for botocore-based clients in bench/sdk_economy.py (loaded via PYTHONPATH).

When SIDECRED_BENCH_NOW (Unix seconds) is set, every botocore RefreshableCredentials
judges expiry against that simulated time instead of the wall clock. Only the
clock changes; the SDK's own refresh logic and its HTTP fetches run as shipped.
"""

import datetime
import os


def _bench_now() -> datetime.datetime:
    raw = os.environ.get("SIDECRED_BENCH_NOW")
    if not raw:
        return datetime.datetime.now(datetime.UTC)
    return datetime.datetime.fromtimestamp(float(raw), datetime.UTC)


def _install() -> None:
    try:
        from botocore import credentials
    except ImportError:
        return
    original = credentials.RefreshableCredentials.__init__

    def __init__(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        original(self, *args, **kwargs)
        self._time_fetcher = _bench_now

    credentials.RefreshableCredentials.__init__ = __init__


if os.environ.get("SIDECRED_BENCH_CLOCK") == "1":
    _install()
