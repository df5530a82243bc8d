"""Matching one event field against a typed value, with Dovecot 2.4's per-type rules.

Each comparison becomes a predicate on the field's value (None when the event lacks the
field), chosen once at compile time for its value kind and operator. The rules follow
``event_match_field`` in 2.4's ``event-filter.c``:

* missing field: matches only a literal ``""``, whatever the operator;
* str: ``=`` only. An empty field matches only ``""``. Literals and wildcards compare
  ASCII-case-insensitively; a number compares with its decimal text (``007`` -> ``7``,
  ``1k`` -> ``1024``), as 2.4 does;
* int: numbers with any operator; a numeric wildcard with ``=``, on the decimal text;
  any other value (string, wildcard, IP, ambiguous unit like ``5m``) never matches;
* strlist: ``=`` only, true if any element matches; ``""`` matches an empty list. 2.4
  compares literals case-insensitively too: it passes no case flag for literals or
  wildcards (2.3 used ``strcmp`` for literals, so ``reason_code=IMAP:CMD_FETCH`` matches
  in 2.4 but did not in 2.3). We follow 2.4, the version this exporter implements;
* timeval: never;
* IP value (``127.0.0.0/8``): our events carry addresses as str fields (2.4 has an ``ip``
  type), so a str field holding an address matches by network membership; a str field
  that is not an address compares with the value's canonical text, as 2.4 compares str
  fields. Inequalities are false.

Case-insensitivity is ASCII-only, as in Dovecot: ``É`` does not match ``é``.
"""

from __future__ import annotations

import operator
import string
from collections.abc import Callable
from typing import Final, TypeAlias

from exporter.event import Event, FieldValue
from exporter.filter.ip import Network, parse_address
from exporter.filter.nodes import Field, Op
from exporter.filter.values import Number, Text, TypedValue, Wildcard
from exporter.filter.wildcard import compile_wildcard

Matcher: TypeAlias = Callable[[Event], bool]
Predicate: TypeAlias = Callable[[FieldValue | None], bool]

_ASCII_LOWER: Final = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
_COMPARE: Final[dict[Op, Callable[[int, int], bool]]] = {
    Op.EQ: operator.eq,
    Op.GT: operator.gt,
    Op.LT: operator.lt,
    Op.GE: operator.ge,
    Op.LE: operator.le,
}


def compile_field(node: Field) -> Matcher:
    """A matcher for ``key op value``; ``duration`` falls back to the event's times."""
    predicate = _predicate(node.op, node.typed)
    key = node.key
    if key == "duration":

        def match_duration(event: Event) -> bool:
            value = event.fields.get("duration")
            return predicate(event.duration_us() if value is None else value)

        return match_duration

    def match(event: Event) -> bool:
        return predicate(event.fields.get(key))

    return match


def ascii_lower(text: str) -> str:
    """Lower-case ASCII letters only, as Dovecot's ``i_tolower``."""
    return text.lower() if text.isascii() else text.translate(_ASCII_LOWER)


def _predicate(op: Op, typed: TypedValue) -> Predicate:
    if isinstance(typed, Text):
        return _text(op, typed.value)
    if isinstance(typed, Number):
        return _number(op, typed.value)
    if isinstance(typed, Network):
        return _network(op, typed)
    return _wildcard(op, typed)


def _text(op: Op, text: str) -> Predicate:
    if op is not Op.EQ:
        return _is_missing if text == "" else _never
    same = _same_text(text)
    lowered, folded, ascii_text, empty = text.lower(), ascii_lower(text), text.isascii(), not text

    def predicate(value: FieldValue | None) -> bool:
        if isinstance(value, str):  # the hot path: _same_text inlined
            return value.lower() == lowered and (
                (ascii_text and value.isascii()) or ascii_lower(value) == folded
            )
        if isinstance(value, list):
            return any(map(same, value)) or (empty and not value)
        return empty and value is None

    return predicate


def _number(op: Op, number: int) -> Predicate:
    if op is not Op.EQ:
        compare = _COMPARE[op]
        return lambda value: isinstance(value, int) and compare(value, number)
    text = str(number)

    def predicate(value: FieldValue | None) -> bool:
        if isinstance(value, int):
            return value == number
        if isinstance(value, str):
            return value == text  # digits and '-' only: no case to fold
        if isinstance(value, list):
            return text in value
        return False

    return predicate


def _network(op: Op, network: Network) -> Predicate:
    if op is not Op.EQ:
        return _never
    same = _same_text(str(network))

    def predicate(value: FieldValue | None) -> bool:
        if isinstance(value, str):  # "" is no address and no IP's text: no match
            address = parse_address(value)
            return same(value) if address is None else network.contains(address)
        if isinstance(value, list):
            return any(map(same, value))
        return False

    return predicate


def _wildcard(op: Op, wildcard: Wildcard) -> Predicate:
    if op is not Op.EQ:
        return _never
    fullmatch = compile_wildcard(wildcard.mask, ignore_case=True)
    numeric = wildcard.numeric

    def predicate(value: FieldValue | None) -> bool:
        if isinstance(value, str):
            return value != "" and fullmatch(value) is not None
        if isinstance(value, int):
            return numeric and fullmatch(str(value)) is not None
        if isinstance(value, list):
            return any(fullmatch(item) is not None for item in value)
        return False

    return predicate


def _same_text(text: str) -> Callable[[str], bool]:
    """Equality up to ASCII case. ``str.lower`` filters first (it never separates strings
    that differ only in ASCII case); for ASCII text an ASCII value then matches, and
    anything else is confirmed with ``ascii_lower`` (``K``, the Kelvin sign, is no ``k``)."""
    lowered, folded, ascii_text = text.lower(), ascii_lower(text), text.isascii()

    def same(value: str) -> bool:
        return value.lower() == lowered and (
            (ascii_text and value.isascii()) or ascii_lower(value) == folded
        )

    return same


def _is_missing(value: FieldValue | None) -> bool:
    return value is None


def _never(value: FieldValue | None) -> bool:
    return False
