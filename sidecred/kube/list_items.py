"""A LIST response's items, parsed one at a time.

`json.loads` of a whole page holds the interpreter for as long as the page takes
to parse (a page of large pods is megabytes), and the event loop that serves TLS
handshakes and requests waits that long. Here the C decoder parses one value at
a time (`raw_decode`), so other threads run between items, and a caller that
projects each item as it comes never holds more than one parsed object.
"""

from __future__ import annotations

import json
import re
from collections.abc import Generator, Iterator
from typing import Any

_WHITESPACE = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()


def _skip(text: str, index: int) -> int:
    return _WHITESPACE.match(text, index).end()  # type: ignore[union-attr]


def _expect(text: str, index: int, chars: str) -> str:
    found = text[index : index + 1]
    if not found or found not in chars:
        raise ValueError(f"expected {' or '.join(repr(c) for c in chars)} at {index} in a List")
    return found


def _items(text: str, index: int) -> Generator[Any, None, int]:
    """Yield each element of the array at `index`; return the index after it."""
    index = _skip(text, index + 1)
    if text.startswith("]", index):
        return index + 1
    while True:
        item, index = _DECODER.raw_decode(text, index)
        yield item
        index = _skip(text, index)
        if _expect(text, index, ",]") == "]":
            return index + 1
        index = _skip(text, index + 1)


def list_items(text: str, fields: dict[str, Any]) -> Iterator[Any]:
    """Yield the `items` of the List object `text` one at a time; the List's other
    top-level fields (`metadata`, `kind`, ...) are put into `fields` as they are read,
    so they are all there once the iteration ends. ValueError if `text` is no object."""
    index = _skip(text, 0)
    _expect(text, index, "{")
    index = _skip(text, index + 1)
    if text.startswith("}", index):
        return
    while True:
        key, index = _DECODER.raw_decode(text, index)
        if not isinstance(key, str):
            raise ValueError(f"expected a key at {index} in a List")
        index = _skip(text, index)
        _expect(text, index, ":")
        index = _skip(text, index + 1)
        if key == "items" and text.startswith("[", index):
            index = yield from _items(text, index)
        else:
            fields[key], index = _DECODER.raw_decode(text, index)
        index = _skip(text, index)
        if _expect(text, index, ",}") == "}":
            return
        index = _skip(text, index + 1)
