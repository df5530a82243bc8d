"""Reading Dovecot json and tab-text lines back into typed events.

A line starting with ``{`` is json, any other non-empty line is tab-text. Bytes that are
not valid UTF-8 are kept (as surrogates), never an error.

JSON typing: integer -> int; number with a fraction -> Timestamp (unix seconds, exact to
the nanosecond: Dovecot's six digits go through a float, more take a Decimal path);
array of strings -> strlist; a string of Dovecot's exact RFC 3339 shape
``YYYY-MM-DDTHH:MM:SS.ffffffZ`` -> Timestamp, unless the line's own start/end times are
numbers (Dovecot then wrote every timeval as a number); other strings -> str.
``start_time`` / ``end_time`` accept either format at any precision.

Tab-text carries no types, so values are typed by shape: a canonical integer -> int; a
timestamp of the line's time format (taken from ``start_time``) with six digits ->
Timestamp; a value that holds an escaped TAB or \\x01 and whose pieces are themselves
escaped text -> strlist; else str. Any choice writes the same tab-text bytes back; only
a conversion to json can show the guess.
"""

from __future__ import annotations

import json
import re
from decimal import ROUND_FLOOR, Decimal
from typing import Any, Final

import orjson

from exporter.errors import EventParseError
from exporter.event import INT_MAX, INT_MIN, Event, Fields, Timestamp
from exporter.formats.text import from_bytes, tab_escape, tab_unescape
from exporter.formats.timefmt import (
    MAX_TIME_NS,
    MIN_TIME_NS,
    parse_rfc3339_ns,
    parse_time_ns,
    parse_time_ns_or_none,
)

_MEMBERS: Final = ("event", "hostname", "start_time", "end_time", "categories", "fields")
_MEMBER_SET: Final = frozenset(_MEMBERS)
_MEMBER_NEEDLES: Final = {name: b'"' + name.encode() + b'":' for name in _MEMBERS}
_ITEMS: Final = ("event:", "hostname:", "start_time:", "end_time:", "category:", "field:")
_EXACT_FLOAT_LIMIT: Final = 2.0**32  # below this, round(f * 1e6) recovers 6 decimals exactly
_DECIMAL_SECONDS_LIMIT: Final = Decimal(10**12)  # far beyond year 9999, far within Decimal
_MORE_THAN_US = re.compile(rb"[0-9]\.[0-9]{7}")
_INT = re.compile(r"-?(?:0|[1-9][0-9]*)\Z")
_RFC3339_BY_DIGITS: Final = {
    digits: re.compile(
        r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}"
        + (rf"\.[0-9]{{{digits}}}" if digits else "")
        + r"Z\Z"
    )
    for digits in range(10)
}
_UNIX_BY_DIGITS: Final = {
    digits: re.compile(rf"-?[0-9]+\.[0-9]{{{digits}}}\Z") for digits in range(1, 10)
}


def read_event(line: bytes) -> Event:
    """One event from one line (without its newline). Raises EventParseError."""
    if not line:
        raise EventParseError("empty line")
    if line[0] == 0x7B:  # "{"
        return read_json(line)
    return read_tabtext(line)


# -- json ---------------------------------------------------------------------------


class _NeedsExactParse(Exception):
    """A number orjson read as a float cannot be converted exactly; parse with Decimal."""


def read_json(line: bytes) -> Event:
    """One event from a Dovecot json object."""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return _event_from_json(_loads_exact(line), None)
    try:
        return _event_from_json(obj, line)
    except _NeedsExactParse:
        return _event_from_json(_loads_exact(line), None)


def _float_digits_beyond_us(line: bytes, key: str) -> bool:
    """:func:`_digits_beyond_us` for the number of field ``key``."""
    if key.isascii() and key.isprintable() and '"' not in key and "\\" not in key:
        return _digits_beyond_us(line, b'"' + key.encode() + b'":')
    return _MORE_THAN_US.search(line) is not None  # a key JSON escapes: scan it all


def _digits_beyond_us(line: bytes, member: bytes) -> bool:
    """Whether the number after ``member`` in the raw line has more than 6 decimals.

    A float cannot tell 1795304520.099772 from 1795304520.0997721, so the raw text
    decides; Dovecot's 6 digits stay on the fast float path.
    """
    at = line.find(member)
    while at > 0 and line[at - 1] not in b"{,":  # inside another key: '"\\"":' holds '"":'
        at = line.find(member, at + 1)
    if at < 0:
        return True  # not where we expected it: let the exact path decide
    at += len(member)
    dot = line.find(b".", at, at + 32)
    return dot >= 0 and line[dot + 7 : dot + 8].isdigit()


def _loads_exact(line: bytes) -> Any:
    """The slow reader: keeps invalid UTF-8 (as surrogates) and reads numbers exactly."""
    try:
        return json.loads(from_bytes(line), parse_float=Decimal, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise EventParseError(f"not valid JSON: {exc.msg}", exc.colno) from None


def _no_constant(name: str) -> Any:
    raise json.JSONDecodeError(f"{name} is not allowed", name, 0)


def _event_from_json(obj: Any, line: bytes | None) -> Event:
    """``line`` is the raw text when orjson read the numbers (as floats), None when they
    are Decimal and exact already."""
    if type(obj) is not dict:
        raise EventParseError(f"a JSON event is an object, not {_json_kind(obj)}")
    if not obj.keys() <= _MEMBER_SET:
        unknown = next(k for k in obj if k not in _MEMBER_SET)
        raise EventParseError(f"unknown member {unknown!r} (allowed: {', '.join(_MEMBERS)})")
    get = obj.get
    name = get("event")
    hostname = get("hostname")
    start = get("start_time")
    end = get("end_time")
    categories = get("categories")
    fields = get("fields")
    if type(name) is not str and name is not None:
        raise EventParseError(f'"event" must be a string, not {_json_kind(name)}')
    if type(hostname) is not str and hostname is not None:
        raise EventParseError(f'"hostname" must be a string, not {_json_kind(hostname)}')
    # The line's own times tell how its exporter wrote timestamps: field values of that
    # shape and precision are timestamps, other values are what they look like.
    shape: _TimeShape = None
    if type(start) is float and line is not None:  # the common case, inline
        if _digits_beyond_us(line, b'"start_time":'):
            raise _NeedsExactParse
        start = _float_ns(start)
        shape = "number"
    elif start is not None:
        shape = _time_shape(start)
        start = _json_time_ns("start_time", start, line)
    if end is not None:
        if shape is None:
            shape = _time_shape(end)
        end = _json_time_ns("end_time", end, line)
    if type(categories) is list:
        for category in categories:
            if type(category) is not str:
                raise EventParseError('"categories" must be an array of strings')
    elif categories is None:
        categories = []
    else:
        raise EventParseError('"categories" must be an array of strings')
    if type(fields) is dict:
        if shape == "number" and line is not None:
            _type_unix_json_fields(fields, line)
        else:
            _type_json_fields(fields, line, shape)
    elif fields is None:
        fields = {}
    else:
        raise EventParseError(f'"fields" must be an object, not {_json_kind(fields)}')
    return Event(name, hostname, start, end, categories, fields)


# "number" (unix times), the fraction digit count of RFC 3339 times, or None (no times).
_TimeShape = str | int | None


def _time_shape(value: Any) -> _TimeShape:
    if type(value) is str:
        dot = value.find(".")
        return 0 if dot < 0 else len(value) - dot - 2  # digits between "." and "Z"
    return "number"


def _type_unix_json_fields(fields: dict[str, Any], line: bytes) -> None:
    """The common case of :func:`_type_json_fields`: orjson read a line whose times are
    unix numbers. Strings need no look, and every int orjson gives is in our range."""
    for key, value in fields.items():
        kind = type(value)
        if kind is str or kind is int:
            continue
        if kind is float:
            if _float_digits_beyond_us(line, key):
                raise _NeedsExactParse
            fields[key] = Timestamp(_float_ns(value))
        elif kind is list:
            _check_strlist(key, value)
        else:
            raise _not_a_field_type(key, value)


def _check_strlist(key: str, value: list[Any]) -> None:
    for item in value:
        if type(item) is not str:
            raise EventParseError(f"field {key!r}: an array value must hold only strings")


def _not_a_field_type(key: str, value: Any) -> EventParseError:
    return EventParseError(
        f"field {key!r}: {_json_kind(value)} is not a Dovecot field type "
        "(allowed: string, integer, number with a fraction, array of strings)"
    )


def _type_json_fields(fields: dict[str, Any], line: bytes | None, shape: _TimeShape) -> None:
    """Turn JSON values into field values in place (keys and order stay).

    Numbers with a fraction are timestamps; strings are timestamps only when the line's
    own times are RFC 3339 strings with the same number of fraction digits.
    """
    time_text = _RFC3339_BY_DIGITS.get(shape) if type(shape) is int else None
    for key, value in fields.items():
        kind = type(value)
        if kind is str:
            if time_text is not None and time_text.match(value):
                ns = parse_rfc3339_ns(value)
                if ns is not None:
                    fields[key] = Timestamp(ns)
        elif kind is int:
            if value > INT_MAX or value < INT_MIN:
                raise EventParseError(f"field {key!r}: {value} does not fit in 64 bits")
        elif kind is float:
            if line is not None and _float_digits_beyond_us(line, key):
                raise _NeedsExactParse
            fields[key] = Timestamp(_float_ns(value))
        elif kind is Decimal:
            fields[key] = Timestamp(_decimal_ns(f"field {key!r}", value))
        elif kind is list:
            _check_strlist(key, value)
        else:
            raise _not_a_field_type(key, value)


def _json_time_ns(member: str, value: Any, line: bytes | None) -> int:
    kind = type(value)
    if kind is float:
        if line is not None and _digits_beyond_us(line, _MEMBER_NEEDLES[member]):
            raise _NeedsExactParse
        return _float_ns(value)
    if kind is Decimal:
        return _decimal_ns(f'"{member}"', value)
    if kind is int:
        if not MIN_TIME_NS <= value * 1_000_000_000 <= MAX_TIME_NS:
            raise EventParseError(f'"{member}": {value} is out of range (years 1 to 9999)')
        return value * 1_000_000_000  # type: ignore[no-any-return]
    if kind is str:
        try:
            return parse_time_ns(value)
        except EventParseError as exc:
            raise EventParseError(f'"{member}": {exc}') from None
    raise EventParseError(f'"{member}" must be a number or a string, not {_json_kind(value)}')


def _float_ns(value: float) -> int:
    """Unix seconds read as a float whose text had at most 6 decimals, to nanoseconds.

    Below 2**32 seconds ``round(value * 1e6)`` gives those decimals back exactly; larger
    values take the exact Decimal path.
    """
    if -_EXACT_FLOAT_LIMIT < value < _EXACT_FLOAT_LIMIT:
        return round(value * 1e6) * 1000
    raise _NeedsExactParse


def _decimal_ns(what: str, value: Decimal) -> int:
    """Unix seconds read exactly, to nanoseconds (truncated, like every time we write)."""
    if value.is_finite() and -_DECIMAL_SECONDS_LIMIT < value < _DECIMAL_SECONDS_LIMIT:
        ns = int(value.scaleb(9).to_integral_value(rounding=ROUND_FLOOR))
        if MIN_TIME_NS <= ns <= MAX_TIME_NS:
            return ns
    raise EventParseError(f"{what}: {value} is not a timestamp in years 1 to 9999")


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if type(value) is bool:
        return "true" if value else "false"
    return {
        dict: "an object",
        list: "an array",
        str: "a string",
        int: "an integer",
        float: "a number",
        Decimal: "a number",
    }.get(type(value), type(value).__name__)


# -- tab-text -----------------------------------------------------------------------


def read_tabtext(line: bytes) -> Event:
    """One event from a Dovecot tab-text line."""
    text = from_bytes(line)
    event = Event()
    categories = event.categories
    fields: Fields = event.fields
    time_text: re.Pattern[str] | None = None  # the shape of this line's own times
    column = 1
    for item in text.split("\t"):
        here = column
        column += len(item) + 1
        if not item:
            continue  # Dovecot's categories section leaves one when there is no category
        if item.startswith("field:"):
            key, sep, raw = item[6:].partition("=")
            if not sep:
                raise EventParseError(f"field item {_clip(item)!r} has no '='", here)
            key = tab_unescape(key)
            if key in fields:
                raise EventParseError(f"field {key!r} appears twice", here)
            fields[key] = _tab_value(raw, time_text)
        elif item.startswith("category:"):
            categories.append(tab_unescape(item[9:]))
        elif item.startswith("event:"):
            event.name = tab_unescape(item[6:])
        elif item.startswith("hostname:"):
            event.hostname = tab_unescape(item[9:])
        elif item.startswith(("start_time:", "end_time:")):
            member, _, value = item.partition(":")
            try:
                ns = parse_time_ns(value)
            except EventParseError as exc:
                raise EventParseError(f"{member}: {exc}", here) from None
            if time_text is None:
                time_text = _time_pattern(value)
            if member == "start_time":
                event.start_ns = ns
            else:
                event.end_ns = ns
        else:
            raise EventParseError(
                f"unknown item {_clip(item)!r} (allowed: {' '.join(_ITEMS)})", here
            )
    return event


def _time_pattern(text: str) -> re.Pattern[str] | None:
    """The pattern of timestamps written like ``text`` (same format, same precision)."""
    dot = text.find(".")
    if text.endswith("Z"):
        return _RFC3339_BY_DIGITS[0 if dot < 0 else len(text) - dot - 2]
    return None if dot < 0 else _UNIX_BY_DIGITS[len(text) - dot - 1]


def _tab_value(raw: str, time_text: re.Pattern[str] | None) -> str | int | Timestamp | list[str]:
    """Type a value by its shape: canonical int, a timestamp written like the line's own
    times, a strlist (escaped TABs, every piece itself escaped text), else str."""
    value = tab_unescape(raw)
    if "\t" in value or "\x01" in value:
        pieces = value.split("\t")
        items = [tab_unescape(piece) for piece in pieces]
        if all(tab_escape(item) == piece for item, piece in zip(items, pieces, strict=True)):
            return items
        return value
    if value and value[0] in "-0123456789":
        if _INT.match(value) and value != "-0":
            number = int(value)
            if INT_MIN <= number <= INT_MAX:
                return number
        elif time_text is not None and time_text.match(value):
            ns = parse_time_ns_or_none(value)
            if ns is not None:
                return Timestamp(ns)
    return value


def _clip(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit] + "..."
