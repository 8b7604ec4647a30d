"""Controllable clock for botocore-based clients in bench/sdk_economy.py (loaded via PYTHONPATH).

When SIDECRED_BENCH_NOW (Unix seconds) is set, every botocore RefreshableCredentials
judges expiry against that simulated time instead of the wall clock. Only the
clock changes; the SDK's own refresh logic and its HTTP fetches run as shipped.
"""

import datetime
import os
from typing import Any


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

    # self: Any, as botocore's stubs do not declare the private _time_fetcher set here.
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self._time_fetcher = _bench_now

    # Replacing the method on the class is the point of this module; mypy rejects any
    # assignment to a method (and ruff a setattr with a constant name), so it is waived here.
    credentials.RefreshableCredentials.__init__ = __init__  # type: ignore[method-assign]


if os.environ.get("SIDECRED_BENCH_CLOCK") == "1":
    _install()
