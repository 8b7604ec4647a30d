"""Fixtures for the sidecar hardening tests: moto behind a fault proxy, sidecar processes."""

from tests.sidecar.sidecar_process import sidecar_factory
from tests.support.sts import moto_sts_module
from tests.support.sts_fault_proxy import sts_proxy, sts_proxy_factory

__all__ = ["moto_sts_module", "sidecar_factory", "sts_proxy", "sts_proxy_factory"]
