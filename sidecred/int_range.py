"""The one parser for whole-number settings in a range (ports, durations, days).

Shared by the sidecar's env, the webhook's options and annotations, and the CLIs.
"""

from __future__ import annotations


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
