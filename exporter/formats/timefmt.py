"""Timestamp text: Dovecot's ``rfc3339`` and ``unix`` formats at s, ms, us or ns precision.

Dovecot writes ``%d.%06d`` (unix) or ``%Y-%m-%dT%H:%M:%S.%06dZ`` in UTC (rfc3339): always
six digits, truncated, never rounded. ``us`` reproduces that; the other precisions cut or
extend the fraction (``s`` has none). Times are integer nanoseconds.

A negative unix time is written sign and magnitude (``-0.500000``), so the text is the
true value and reads back exactly.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Final, Literal, TypeVar

from exporter.errors import EventFormatError, EventParseError, UsageError
from exporter.formats.text import shown

TimeFormat = Literal["rfc3339", "unix"]
Precision = Literal["s", "ms", "us", "ns"]
TIME_FORMATS: Final[tuple[TimeFormat, ...]] = ("rfc3339", "unix")
PRECISIONS: Final[tuple[Precision, ...]] = ("s", "ms", "us", "ns")

NS_PER_S: Final = 1_000_000_000
# What RFC 3339 can write with four year digits: years 1 to 9999.
MIN_TIME_NS: Final = -62_135_596_800 * NS_PER_S
MAX_TIME_NS: Final = 253_402_300_800 * NS_PER_S - 1
_DIGITS: Final[dict[str, int]] = {"s": 0, "ms": 3, "us": 6, "ns": 9}
_CACHE_LIMIT: Final = 4096
_THREE_DIGITS: Final = tuple(f"{i:03d}" for i in range(1000))

TimeFormatter = Callable[[int], str]
T = TypeVar("T")


def make_time_formatter(time_format: str, precision: str = "us") -> TimeFormatter:
    """A function from integer nanoseconds to timestamp text (no quotes)."""
    if time_format not in TIME_FORMATS:
        raise UsageError(f"unknown time format {time_format!r} (allowed: rfc3339, unix)")
    if precision not in _DIGITS:
        raise UsageError(f"unknown time precision {precision!r} (allowed: s, ms, us, ns)")
    digits = _DIGITS[precision]
    divisor = 10 ** (9 - digits)
    if time_format == "unix":
        return _unix_formatter(digits, divisor)
    return _rfc3339_formatter(digits)


def _unix_formatter(digits: int, divisor: int) -> TimeFormatter:
    if digits == 0:

        def unix_seconds(ns: int) -> str:
            return str(ns // NS_PER_S) if ns >= 0 else str(-(-ns // NS_PER_S))

        return unix_seconds

    pattern = f"%d.%0{digits}d"

    def unix(ns: int) -> str:
        if ns >= 0:
            return pattern % (ns // NS_PER_S, ns % NS_PER_S // divisor)
        sec, sub = divmod(-ns, NS_PER_S)
        frac = sub // divisor
        sign = "-" if sec or frac else ""  # what truncates to zero has no sign
        return sign + pattern % (sec, frac)

    return unix


def _rfc3339_formatter(digits: int) -> TimeFormatter:
    """Formats with the date and time part of the last second seen at hand.

    A time within that second costs one subtraction and small-int arithmetic (no
    division of a 64-bit value, which is the dearest step here); another second comes
    from a per-second cache of the date and time text.
    """
    prefixes: dict[int, str] = {}
    get = prefixes.get
    # [start ns, end ns) of the second at hand and its text up to the fraction
    lo = hi = 0
    head = ""

    def enter(ns: int) -> None:
        nonlocal lo, hi, head
        sec = ns // NS_PER_S
        text = get(sec)
        if text is None:
            if len(prefixes) >= _CACHE_LIMIT:
                prefixes.clear()
            if not MIN_TIME_NS <= sec * NS_PER_S <= MAX_TIME_NS:
                raise EventFormatError(
                    f"timestamp {sec} s is out of range for RFC 3339 (years 1 to 9999)"
                )
            t = time.gmtime(sec)
            text = (
                f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}"
                f"T{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
            )
            prefixes[sec] = text
        lo = sec * NS_PER_S
        hi = lo + NS_PER_S
        head = text + "." if digits else text + "Z"

    three = _THREE_DIGITS
    if digits == 0:

        def rfc3339_seconds(ns: int) -> str:
            if not lo <= ns < hi:
                enter(ns)
            return head

        return rfc3339_seconds

    if digits == 3:

        def rfc3339_ms(ns: int) -> str:
            if not lo <= ns < hi:
                enter(ns)
            return head + three[(ns - lo) // 1_000_000] + "Z"

        return rfc3339_ms

    if digits == 6:  # Dovecot's: the fraction from two 3-digit pieces, no formatting

        def rfc3339_us(ns: int) -> str:
            if not lo <= ns < hi:
                enter(ns)
            us = (ns - lo) // 1000
            return head + three[us // 1000] + three[us % 1000] + "Z"

        return rfc3339_us

    def rfc3339_ns(ns: int) -> str:
        if not lo <= ns < hi:
            enter(ns)
        sub = ns - lo
        return head + three[sub // 1_000_000] + three[sub // 1000 % 1000] + three[sub % 1000] + "Z"

    return rfc3339_ns


def remember_last(fmt: Callable[[int], T]) -> Callable[[int], T]:
    """``fmt`` that reuses its last result: Dovecot stamps every event handled in one
    ioloop run of its stats process with the same end_time."""
    last_ns: int | None = None
    last_value: T

    def remembered(ns: int) -> T:
        nonlocal last_ns, last_value
        if ns != last_ns:
            last_value = fmt(ns)
            last_ns = ns
        return last_value

    return remembered


# -- reading timestamps back --------------------------------------------------------

_RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,9}))?Z\Z"
)
_UNIX = re.compile(r"(-?)([0-9]{1,12})(?:\.([0-9]{1,9}))?\Z")
_EPOCH_DAYS: dict[tuple[int, int, int], int] = {}
# "YYYY-MM-DDTHH:MM:SS" -> nanoseconds, for the fast path of parse_time_ns.
_SECONDS: dict[str, int] = {}


def parse_rfc3339_ns(text: str) -> int | None:
    """Nanoseconds for ``YYYY-MM-DDTHH:MM:SS[.f{1,9}]Z``, or None if it is not that shape."""
    m = _RFC3339.match(text)
    if m is None:
        return None
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    if not (year >= 1 and 1 <= month <= 12 and 1 <= day <= _days_in_month(year, month)):
        return None
    if hour > 23 or minute > 59 or second > 59:
        return None
    frac = m.group(7) or ""
    days = _days_from_civil(year, month, day)
    seconds = (days * 86400 + hour * 3600 + minute * 60 + second) * NS_PER_S
    if len(_SECONDS) >= _CACHE_LIMIT:
        _SECONDS.clear()
    _SECONDS[text[:19]] = seconds
    return seconds + int(frac.ljust(9, "0") or "0")


def parse_unix_ns(text: str) -> int | None:
    """Nanoseconds for ``[-]SECONDS[.f{1,9}]``, or None if it is not that shape."""
    m = _UNIX.match(text)
    if m is None:
        return None
    sign, sec, frac = m.groups()
    ns = int(sec) * NS_PER_S + int((frac or "").ljust(9, "0") or "0")
    if sign:
        ns = -ns
    return ns if MIN_TIME_NS <= ns <= MAX_TIME_NS else None


def parse_time_ns_or_none(text: str) -> int | None:
    """Nanoseconds for a timestamp in either format (years 1 to 9999), else None."""
    ns = parse_rfc3339_ns(text)
    if ns is None:
        ns = parse_unix_ns(text)
    return ns


def parse_time_ns(text: str) -> int:
    """A start/end time in either format and any precision; EventParseError otherwise."""
    if len(text) == 27 and text[19] == "." and text[26] == "Z":  # Dovecot's own shape
        seconds = _SECONDS.get(text[:19])
        frac = text[20:26]
        if seconds is not None and frac.isdigit() and frac.isascii():
            return seconds + int(frac) * 1000
    ns = parse_time_ns_or_none(text)
    if ns is None:
        raise EventParseError(
            f"{shown(text)} is not a timestamp (expected unix seconds like 1795304520.099772 "
            "or RFC 3339 like 2026-11-21T23:42:00.099772Z, years 1 to 9999)"
        )
    return ns


def _days_in_month(year: int, month: int) -> int:
    if month == 2:
        leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
        return 29 if leap else 28
    return 30 if month in (4, 6, 9, 11) else 31


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 in the proleptic Gregorian calendar (Howard Hinnant's method)."""
    key = (year, month, day)
    cached = _EPOCH_DAYS.get(key)
    if cached is not None:
        return cached
    y = year - (month <= 2)
    era = y // 400
    yoe = y - era * 400
    mp = (month + 9) % 12
    doy = (153 * mp + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    days = era * 146097 + doe - 719468
    if len(_EPOCH_DAYS) < _CACHE_LIMIT:
        _EPOCH_DAYS[key] = days
    return days
