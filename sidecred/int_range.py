"""The one parser for whole-number settings in a range (ports, durations, days).

Shared by the sidecar's env, the webhook's options and annotations, and the CLIs.
"""

from __future__ import annotations

from collections.abc import Callable


def parse_int_in_range(name: str, value: str, low: int, high: int, *, unit: str = "") -> int:
    """`value` as a whole number of ASCII digits in [low, high]; ValueError naming `name` if not.

    `int()` alone also takes other scripts' digits ("١٢") and surrounding space; a
    setting such as "²" passes `str.isdigit()` and then crashes `int()`.
    """
    text = value.strip()
    suffix = f" {unit}" if unit else ""
    if not (text.isascii() and text.lstrip("+-").isdigit() and len(text) <= 20):
        raise ValueError(f"{name}={value[:40]!r} is not a whole number{suffix}")
    number = int(text)
    if not low <= number <= high:
        raise ValueError(f"{name}={number} is outside {low}-{high}{suffix}")
    return number


def int_in_range_or_problem(
    name: str, value: str, low: int, high: int, problems: list[str], *, unit: str = ""
) -> int:
    """`parse_int_in_range`, but the error is appended to `problems` and 0 returned."""
    try:
        return parse_int_in_range(name, value, low, high, unit=unit)
    except ValueError as exc:
        problems.append(str(exc))
        return 0


def int_in_range_type(name: str, low: int, high: int, *, unit: str = "") -> Callable[[str], int]:
    """An argparse `type=` for a whole number in [low, high], with the parser's message."""

    def parse(value: str) -> int:
        # Imported here: the sidecar parses its env with this module and never loads argparse.
        from argparse import ArgumentTypeError

        try:
            return parse_int_in_range(name, value, low, high, unit=unit)
        except ValueError as exc:
            raise ArgumentTypeError(str(exc)) from None

    return parse
