"""Fixtures for the end-to-end tests: one STS emulator per module."""

from tests.support.sts import moto_sts_module

__all__ = ["moto_sts_module"]
