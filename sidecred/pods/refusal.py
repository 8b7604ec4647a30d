"""Refusal: what every check raises for a request sidecred will not admit or serve."""

from __future__ import annotations

from sidecred.sidecar.wire import error_body


class Refusal(Exception):
    """A request sidecred will not admit or serve.

    `reason` is a stable label (the webhook's metrics label and admission reason, or the
    broker's error code), `message` says what a person can do about it, and `status` is
    the HTTP status it is answered with.
    """

    def __init__(self, reason: str, message: str, status: int = 403) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.status = status

    def __repr__(self) -> str:
        return f"Refusal({self.reason!r}, {self.message!r}, {self.status})"

    def error_body(self) -> bytes:
        """The JSON error of a credential endpoint, as the sidecar's own (sidecar.wire)."""
        return error_body(self.reason, self.message)
