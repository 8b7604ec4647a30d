"""Fixtures for the sidecar tests: STS emulators and sidecar processes."""

from tests.sidecar.fault_sts import fault_sts_factory
from tests.sidecar.sidecar_process import sidecar_factory
from tests.support.sts import moto_sts, moto_sts_factory, moto_sts_module

__all__ = [
    "fault_sts_factory",
    "moto_sts",
    "moto_sts_factory",
    "moto_sts_module",
    "sidecar_factory",
]
