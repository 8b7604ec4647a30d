"""Refusal: what every check raises for a request sidecred will not admit."""

from __future__ import annotations


class Refusal(Exception):
    """A request sidecred will not admit: a stable reason label and a readable message."""

    def __init__(self, reason: str, message: str, code: int = 403) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.code = code
