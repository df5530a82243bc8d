"""Typing a field comparison's value at parse time, in Dovecot 2.4's order.

``event-filter-parser.y`` tries the raw value (escapes still in it) as: a 64-bit integer,
an IP or ``ip/bits``, a size (powers of 1024), an interval (kept in microseconds, the unit
events use), and only then as a string: an escaped literal, a numeric wildcard (nothing but
digits, ``*`` and ``?``) or a wildcard. A size ending in ``M``/``m`` is ambiguous (MB or
minutes?), so Dovecot keeps it a string that never matches a number; so do we.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal, TypeAlias

from exporter.filter.ip import Network, parse_network
from exporter.filter.wildcard import is_escaped_literal, unescape

UINT32_MAX: Final = 2**32 - 1  # Dovecot parses intervals into an unsigned int
INT64_MIN: Final = -(2**63)  # filter values are Dovecot's intmax_t ...
INT64_MAX: Final = 2**63 - 1
UINT64_MAX: Final = 2**64 - 1  # ... and sizes into a uoff_t

_INTEGER = re.compile(r"-?([0-9]+)")
_SIZE = re.compile(r"([0-9]+) *(?:[Bb]|([KkMmGgTt])[Ii]?[Bb]?)?")
_INTERVAL = re.compile(r"([0-9]+) *(.+)", re.DOTALL)
_NUMERIC_MASK = re.compile(r"[0-9*?]*")
_SIZE_UNITS: Final = {"k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}
#: Interval units: the words a unit may be any non-empty prefix of, and its milliseconds.
#: ``m`` and ``mi`` would mean minutes, but as sizes (ambiguous, MiB) they never get here.
_INTERVAL_UNITS: Final = (
    (("secs", "seconds"), 1_000),
    (("mins", "minutes"), 60_000),
    (("msecs", "mseconds", "millisecs", "milliseconds"), 1),
    (("hours",), 3_600_000),
    (("days",), 86_400_000),
    (("weeks",), 604_800_000),
)


@dataclass(frozen=True, slots=True)
class Number:
    """A numeric value; sizes are in bytes and intervals in microseconds."""

    value: int
    unit: Literal["integer", "size", "interval"]


@dataclass(frozen=True, slots=True)
class Text:
    """A literal string, unescaped. ``ambiguous_unit`` marks values like ``5m``."""

    value: str
    ambiguous_unit: bool = False


@dataclass(frozen=True, slots=True)
class Wildcard:
    """A mask with escapes kept; ``numeric`` masks also match int fields' decimal text."""

    mask: str
    numeric: bool


TypedValue: TypeAlias = Number | Network | Text | Wildcard


def classify(raw: str) -> TypedValue:
    """What the raw value of ``key op value`` is, tried in Dovecot 2.4's order."""
    integer = parse_int64(raw)
    if integer is not None:
        return Number(integer, "integer")
    network = parse_network(raw)
    if network is not None:
        return network
    size = _parse_size(raw)
    if size is not None and raw[-1] in "Mm":
        return Text(raw, ambiguous_unit=True)
    if size is not None and size <= INT64_MAX:
        return Number(size, "size")
    interval = parse_interval_us(raw)
    if interval is not None:
        return Number(interval, "interval")
    if is_escaped_literal(raw):
        return Text(unescape(raw))
    return Wildcard(raw, numeric=_NUMERIC_MASK.fullmatch(raw) is not None)


def parse_int64(text: str) -> int | None:
    """``str_to_intmax``: optional ``-``, ASCII digits, within int64; else None."""
    match = _INTEGER.fullmatch(text)
    if match is None:
        return None
    value = _bounded_int(match[1], INT64_MAX + 1)
    if value is None:
        return None
    value = -value if text[0] == "-" else value
    return value if INT64_MIN <= value <= INT64_MAX else None


def _parse_size(text: str) -> int | None:
    """``str_parse_get_size``: bytes, if ``text`` is a size that fits in 64 bits."""
    match = _SIZE.fullmatch(text)
    if match is None:
        return None
    unit = match[2]
    multiplier = _SIZE_UNITS[unit.lower()] if unit else 1
    count = _bounded_int(match[1], UINT64_MAX // multiplier)
    return None if count is None else count * multiplier


def parse_interval_us(text: str) -> int | None:
    """``str_parse_get_interval_msecs`` times 1000, if ``text`` is an interval."""
    match = _INTERVAL.fullmatch(text)
    if match is None or not match[2].isascii():
        return None
    unit = match[2].lower()
    for words, msecs in _INTERVAL_UNITS:
        if any(word.startswith(unit) for word in words):
            count = _bounded_int(match[1], UINT32_MAX // msecs)
            return None if count is None else count * msecs * 1000
    return None


def _bounded_int(digits: str, limit: int) -> int | None:
    """``int(digits)`` if it is at most ``limit``, without converting huge digit runs."""
    significant = digits.lstrip("0")
    if len(significant) > len(str(limit)):
        return None
    value = int(significant or "0")
    return value if value <= limit else None
