"""Refusal: what every check raises for a request sidecred will not admit or serve."""

from __future__ import annotations


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

    def error_body(self) -> dict[str, str]:
        """The JSON error of a credential endpoint, in the keys both SDK families parse
        (JS v3 reads Code/Message, Go and Java code/message)."""
        return {
            "Code": self.reason,
            "Message": self.message,
            "code": self.reason,
            "message": self.message,
        }
