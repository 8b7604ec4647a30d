"""Fixtures for the sidecar tests: STS emulators and sidecar processes."""

from tests.sidecar.sidecar_process import sidecar_factory
from tests.support.scripted_broker import scripted_broker_factory
from tests.support.scripted_sts import scripted_sts_factory
from tests.support.sts import moto_sts, moto_sts_factory, moto_sts_module

__all__ = [
    "moto_sts",
    "moto_sts_factory",
    "moto_sts_module",
    "scripted_broker_factory",
    "scripted_sts_factory",
    "sidecar_factory",
]
