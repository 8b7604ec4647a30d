"""Strings a namespace policy's regular expression matches, built from its syntax. Pure.

A small reader of the syntax policies are written in (RE2's common subset:
literals and escapes, `.`, classes, `\\d \\w \\s`, groups, `|`, `* + ? {m,n}`,
anchors and flags). What it does not follow (backreferences, Unicode classes,
`\\Q...\\E`) raises Unreadable, and the caller then gives no warning. A witness
is only a candidate: callers ask the compiled RE2 matcher before trusting it.
"""

from __future__ import annotations

from dataclasses import dataclass

_DIGIT = ((ord("0"), ord("9")),)
_WORD = (*_DIGIT, (ord("A"), ord("Z")), (ord("_"), ord("_")), (ord("a"), ord("z")))
_SPACE = ((9, 10), (12, 13), (32, 32))
_CATEGORIES = {"d": _DIGIT, "w": _WORD, "s": _SPACE}
_ESCAPED_CHARS = {"n": "\n", "t": "\t", "r": "\r", "f": "\f", "v": "\v", "a": "\a"}
_ANCHOR_ESCAPES = set("AzbB")
_PREFERRED = ("a", "0", "-", "/")

# How a witness fills an unbounded repeat of one character beyond its minimum.
SHORTEST, SPAN_SLASH, DIGITS = "", "a/a", "0" * 12


class Unreadable(Exception):
    """A construct the reader does not follow."""


@dataclass(frozen=True)
class CharSet:
    """One character out of `ranges` (code point pairs), or out of all others if negated."""

    ranges: tuple[tuple[int, int], ...]
    negate: bool = False

    def contains(self, ch: str) -> bool:
        inside = any(low <= ord(ch) <= high for low, high in self.ranges)
        return inside != self.negate

    def pick(self, wanted: str) -> str | None:
        """A character of the set, `wanted` if it has it; None if none can be named."""
        own = () if self.negate else tuple(chr(low) for low, _ in self.ranges)
        return next((ch for ch in (wanted, *_PREFERRED, *own) if self.contains(ch)), None)


@dataclass(frozen=True)
class Repeat:
    low: int
    high: int | None  # None: unbounded
    body: Node


@dataclass(frozen=True)
class Alternation:
    branches: tuple[tuple[Node, ...], ...]


Node = CharSet | Repeat | Alternation


def witnesses(pattern: str) -> dict[str, str]:
    """Strings the pattern should match, by fill; {} for a pattern the reader cannot read."""
    try:
        tree = _Reader(pattern).read()
        return {fill: witness(tree, fill) for fill in (SHORTEST, SPAN_SLASH, DIGITS)}
    except (Unreadable, RecursionError, OverflowError, ValueError):
        return {}


def witness(node: Node, fill: str) -> str:
    """A string `node` matches: each repeat takes its minimum, and a repeat of one character
    class also takes `fill` when the class has every character of it and the bound leaves room."""
    if isinstance(node, CharSet):
        char = node.pick("a")
        if char is None:
            raise Unreadable("a class with no character to name")
        return char
    if isinstance(node, Alternation):
        return "".join(witness(part, fill) for part in node.branches[0])
    out = witness(node.body, fill) * node.low
    body = node.body
    room = node.high is None or node.low + len(fill) <= node.high
    if fill and room and isinstance(body, CharSet):
        if all(body.pick(ch) == ch for ch in set(fill)):
            out += fill
    return out


class _Reader:
    """Recursive descent over the pattern text."""

    def __init__(self, pattern: str) -> None:
        self.text = pattern
        self.at = 0

    def read(self) -> Node:
        node = self._alternation()
        if self.at != len(self.text):
            raise Unreadable(f"unexpected {self.text[self.at]!r}")
        return node

    def _peek(self) -> str:
        return self.text[self.at] if self.at < len(self.text) else ""

    def _next(self) -> str:
        ch = self._peek()
        if not ch:
            raise Unreadable("the pattern ends early")
        self.at += 1
        return ch

    def _alternation(self) -> Node:
        branches = [self._sequence()]
        while self._peek() == "|":
            self.at += 1
            branches.append(self._sequence())
        if len(branches) == 1 and len(branches[0]) == 1:
            return branches[0][0]
        return Alternation(tuple(branches))

    def _sequence(self) -> tuple[Node, ...]:
        items: list[Node] = []
        while self._peek() not in ("", "|", ")"):
            atom = self._atom()
            if atom is not None:
                items.append(self._quantified(atom))
        return tuple(items)

    def _atom(self) -> Node | None:
        ch = self._next()
        if ch == "(":
            return self._group()
        if ch == "[":
            return self._class()
        if ch == ".":
            return CharSet(((10, 10),), negate=True)
        if ch in "^$":
            return None
        if ch == "\\":
            return self._escape()
        if ch in "*+?{)":
            raise Unreadable(f"{ch!r} with nothing to repeat")
        return CharSet(((ord(ch), ord(ch)),))

    def _group(self) -> Node | None:
        if self._peek() == "?":
            self.at += 1
            if self._peek() in ("P", "<"):
                self.at = self.text.index(">", self.at) + 1  # a named group
            else:
                while self._peek() not in (":", ")"):
                    if self._next() not in "imsU-":
                        raise Unreadable("an unknown group flag")
                if self._next() == ")":
                    return None  # flags alone: nothing to match
        node = self._alternation()
        if self._next() != ")":
            raise Unreadable("an unclosed group")
        return node

    def _escape(self) -> Node | None:
        ch = self._next()
        if ch.lower() in _CATEGORIES:
            return CharSet(_CATEGORIES[ch.lower()], negate=ch.isupper())
        if ch in _ANCHOR_ESCAPES:
            return None
        char = self._escaped_char(ch)
        return CharSet(((ord(char), ord(char)),))

    def _escaped_char(self, ch: str) -> str:
        if ch in _ESCAPED_CHARS:
            return _ESCAPED_CHARS[ch]
        if ch == "x":
            if self._peek() == "{":
                end = self.text.index("}", self.at)
                digits, self.at = self.text[self.at + 1 : end], end + 1
            else:
                digits, self.at = self.text[self.at : self.at + 2], self.at + 2
            return chr(int(digits, 16))
        if ch.isalnum():
            raise Unreadable(f"the escape \\{ch}")
        return ch

    def _class(self) -> CharSet:
        negate = self._peek() == "^"
        self.at += negate
        ranges: list[tuple[int, int]] = []
        first = True
        while first or self._peek() != "]":
            first = False
            ranges += self._class_item()
        self.at += 1
        return CharSet(tuple(ranges), negate)

    def _class_item(self) -> tuple[tuple[int, int], ...]:
        ch = self._next()
        if ch == "[":
            raise Unreadable("a named class")
        if ch == "\\":
            escaped = self._next()
            if escaped in _CATEGORIES:
                return _CATEGORIES[escaped]
            ch = self._escaped_char(escaped)
        if self._peek() == "-" and self.text[self.at + 1 : self.at + 2] not in ("]", ""):
            self.at += 1
            end = self._next()
            if end in "[\\":
                raise Unreadable("a range ending in an escape")
            return ((ord(ch), ord(end)),)
        return ((ord(ch), ord(ch)),)

    def _quantified(self, atom: Node) -> Node:
        ch = self._peek()
        if ch in ("*", "+", "?"):
            self.at += 1
            low, high = {"*": (0, None), "+": (1, None), "?": (0, 1)}[ch]
        elif ch == "{" and (bounds := self._bounds()) is not None:
            low, high = bounds
        else:
            return atom
        if self._peek() == "?":
            self.at += 1  # lazy: matches the same strings
        if self._peek() in ("*", "+", "?", "{"):
            raise Unreadable("a repeat of a repeat")
        return Repeat(low, high, atom)

    def _bounds(self) -> tuple[int, int | None] | None:
        """`{m}`, `{m,}` or `{m,n}` at the reader's place (consumed), else None."""
        end = self.text.find("}", self.at)
        low_text, comma, high_text = self.text[self.at + 1 : end].partition(",")
        if end < 0 or not low_text.isdigit() or not (high_text.isdigit() or not high_text):
            return None
        self.at = end + 1
        if not comma:
            return int(low_text), int(low_text)
        return int(low_text), int(high_text) if high_text else None
