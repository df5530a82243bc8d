"""The filter's syntax tree, and its canonical source text.

Values are kept *raw*, with their backslash escapes, because what an escape means depends
on what the value turns out to be (a literal drops them, a wildcard keeps ``\\*``). A raw
value is always a valid body for a quoted string, so printing never has to re-escape it.

``str(node)`` is canonical source that parses back to an equal tree. AND and OR are n-ary
(one node per run of the same operator); a child AND/OR is always parenthesized, so the
printed text never relies on Dovecot's surprising equal precedence of AND and OR.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final, TypeAlias

from exporter.filter.values import TypedValue, classify

KEYWORDS: Final = frozenset({"and", "or", "not"})
#: Keys that are not event fields; only ``=`` is allowed with them.
SPECIAL_KEYS: Final = frozenset({"event", "category", "source_location"})
BARE_WORD: Final = re.compile(r"[A-Za-z0-9:.*?_\-/%]+")


class Op(StrEnum):
    EQ = "="
    GT = ">"
    LT = "<"
    GE = ">="
    LE = "<="


@dataclass(frozen=True, slots=True)
class EventName:
    """``event=value``: the event's name (literal or case-sensitive wildcard)."""

    value: str

    def __str__(self) -> str:
        return f"event={format_value(self.value)}"


@dataclass(frozen=True, slots=True)
class Category:
    """``category=value``: a category name, or a log type such as ``debug``."""

    value: str

    def __str__(self) -> str:
        return f"category={format_value(self.value)}"


@dataclass(frozen=True, slots=True)
class SourceLocation:
    """``source_location=file[:line]``."""

    value: str

    def __str__(self) -> str:
        return f"source_location={format_value(self.value)}"


@dataclass(frozen=True, slots=True)
class Field:
    """``key op value`` on an event field; ``typed`` is the value as Dovecot 2.4 reads it."""

    key: str
    op: Op
    value: str
    typed: TypedValue = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.key in SPECIAL_KEYS:
            raise ValueError(f"{self.key!r} is not a field key")
        object.__setattr__(self, "typed", classify(self.value))

    def __str__(self) -> str:
        return f"{format_key(self.key)}{self.op}{format_value(self.value)}"


@dataclass(frozen=True, slots=True)
class Not:
    operand: Node

    def __str__(self) -> str:
        return f"NOT {_operand(self.operand)}"


@dataclass(frozen=True, slots=True)
class And:
    """All operands match; at least two of them."""

    operands: tuple[Node, ...]

    def __post_init__(self) -> None:
        _check_arity(self.operands)

    def __str__(self) -> str:
        return " AND ".join(_operand(node) for node in self.operands)


@dataclass(frozen=True, slots=True)
class Or:
    """Any operand matches; at least two of them."""

    operands: tuple[Node, ...]

    def __post_init__(self) -> None:
        _check_arity(self.operands)

    def __str__(self) -> str:
        return " OR ".join(_operand(node) for node in self.operands)


Node: TypeAlias = EventName | Category | SourceLocation | Field | Not | And | Or


def format_value(raw: str) -> str:
    """A raw value as source: a bare word when it lexes as one, else a quoted string."""
    if BARE_WORD.fullmatch(raw) and raw.lower() not in KEYWORDS:
        return raw
    return f'"{raw}"'


def format_key(key: str) -> str:
    """An (unescaped) key as source, quoting and escaping it when it is not a bare word."""
    if BARE_WORD.fullmatch(key) and key.lower() not in KEYWORDS:
        return key
    escaped = key.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _operand(node: Node) -> str:
    return f"({node})" if isinstance(node, And | Or) else str(node)


def _check_arity(operands: tuple[Node, ...]) -> None:
    if len(operands) < 2:
        raise ValueError("AND/OR need at least two operands")
