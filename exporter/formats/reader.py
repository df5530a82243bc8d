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

Hostile lines cost linear work and end in an EventParseError, never another exception:
JSON nested deeper than MAX_JSON_DEPTH is refused before a recursive reader sees it, no
integer longer than a 64-bit one is converted (in tab-text such digits are a string),
and sender text quoted in a message is escaped and cut (:func:`shown`).
"""

from __future__ import annotations

import json
import re
from decimal import ROUND_FLOOR, Decimal, InvalidOperation
from itertools import accumulate
from typing import Any, Final

import orjson

from exporter.errors import EventParseError
from exporter.event import INT_MAX, INT_MIN, Event, Fields, Timestamp
from exporter.formats.text import from_bytes, shown, tab_unescape
from exporter.formats.timefmt import (
    MAX_TIME_NS,
    MIN_TIME_NS,
    parse_rfc3339_ns,
    parse_time_ns,
    parse_time_ns_or_none,
)
from exporter.observe.text import printable

_MEMBERS: Final = ("event", "hostname", "start_time", "end_time", "categories", "fields")
_MEMBER_SET: Final = frozenset(_MEMBERS)
_ITEMS: Final = ("event:", "hostname:", "start_time:", "end_time:", "category:", "field:")
_EXACT_FLOAT_LIMIT: Final = 2.0**32  # below this, round(f * 1e6) recovers 6 decimals exactly
_DECIMAL_SECONDS_LIMIT: Final = Decimal(10**12)  # far beyond year 9999, far within Decimal
_MORE_THAN_US = re.compile(rb"\.[0-9]{7}")  # in JSON a number's dot follows a digit
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
MAX_JSON_DEPTH: Final = 32
"""The deepest nesting a JSON line may have; a Dovecot event has 3 levels (the event, its
fields, a string list). The exact reader recurses once per level."""
# A JSON string, or an unterminated one up to the end: its brackets are text. Each match
# runs to a closing quote or the end, so cutting every string out is linear.
_JSON_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+(?:"|\\?\Z)', re.DOTALL)
_NOT_BRACKETS: Final = bytes(b for b in range(256) if b not in b"[]{}")
_DEPTH_STEP: Final = tuple(1 if b in b"[{" else -1 if b in b"]}" else 0 for b in range(256))
# What tab_escape never writes: a raw \x00, LF or CR, an \x01 not before 0 1 t n r. A
# value whose TAB-separated pieces hold none of it is a string list.
_NOT_ESCAPED_TEXT = re.compile("[\x00\n\r]|\x01(?![01tnr])")
_MAX_INT_CHARS: Final = len(str(INT_MIN))
"""20: a longer JSON integer (no leading zeros) is out of range (2**64-1 has 20 digits)."""


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


def _beyond_us(line: bytes) -> bool:
    """Whether a number in the raw line may have more than 6 decimals.

    A float cannot tell 1795304520.099772 from 1795304520.0997721, so the raw text
    decides; Dovecot's 6 digits stay on the fast float path. One scan of the whole line
    (a digit run after a dot inside a string only costs the exact path): looking for each
    number's own text would be quadratic in a line of many numbers, and a member written
    twice or in another order would point the search at the wrong number.
    """
    return _MORE_THAN_US.search(line) is not None


def _loads_exact(line: bytes) -> Any:
    """The slow reader: keeps invalid UTF-8 (as surrogates) and reads numbers exactly.

    It is the stdlib's, which recurses once per level and converts any integer: the
    nesting is checked first, and numbers no field can hold are left as text."""
    _check_depth(line)
    try:
        return json.loads(
            from_bytes(line),
            parse_float=_exact_number,
            parse_int=_bounded_int,
            parse_constant=_no_constant,
        )
    except json.JSONDecodeError as exc:
        raise EventParseError(f"not valid JSON: {exc.msg}", exc.colno) from None


def _check_depth(line: bytes) -> None:
    """Refuse nesting deeper than MAX_JSON_DEPTH, in linear time and without recursing:
    strings are cut out, then the running depth of the brackets left is summed (in C)."""
    if line.count(b"[") + line.count(b"{") <= MAX_JSON_DEPTH:
        return  # a line cannot nest deeper than it has openings
    brackets = _JSON_STRING.sub(b"", line).translate(None, _NOT_BRACKETS)
    if max(accumulate(map(_DEPTH_STEP.__getitem__, brackets)), default=0) > MAX_JSON_DEPTH:
        raise EventParseError(
            f"JSON nested more than {MAX_JSON_DEPTH} levels deep (a Dovecot event has 3)"
        )


class _Unbounded:
    """A number the exact reader leaves as text: an integer longer than any 64-bit one,
    a fraction whose exponent a Decimal cannot hold. No field or time can be one."""

    __slots__ = ("problem", "text")

    def __init__(self, text: str, problem: str) -> None:
        self.text = text
        self.problem = problem

    def __str__(self) -> str:
        return f"{printable(self.text, 40)} {self.problem}"


def _bounded_int(text: str) -> int | _Unbounded:
    """int() only for what can fit: Python refuses to convert more than 4,300 digits."""
    if len(text) > _MAX_INT_CHARS:
        return _Unbounded(text, "does not fit in 64 bits")
    return int(text)


def _exact_number(text: str) -> Decimal | _Unbounded:
    try:
        return Decimal(text)
    except InvalidOperation:  # an exponent beyond what a Decimal holds (1e99999999999999999999)
        return _Unbounded(text, "has an exponent out of range")


def _no_constant(name: str) -> Any:
    raise json.JSONDecodeError(f"{name} is not allowed", name, 0)


def _event_from_json(obj: Any, line: bytes | None) -> Event:
    """``line`` is the raw text when orjson read the numbers (as floats), None when they
    are Decimal and exact already. ``scan`` is the raw text while it has not been looked
    at for numbers beyond microseconds (:func:`_beyond_us`), None once it has."""
    if type(obj) is not dict:
        raise EventParseError(f"a JSON event is an object, not {_json_kind(obj)}")
    if not obj.keys() <= _MEMBER_SET:
        unknown = next(k for k in obj if k not in _MEMBER_SET)
        raise EventParseError(f"unknown member {shown(unknown)} (allowed: {', '.join(_MEMBERS)})")
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
    scan = line
    if type(start) is float and line is not None:  # the common case, inline
        if _beyond_us(line):
            raise _NeedsExactParse
        scan = None
        start = _float_ns(start)
        shape = "number"
    elif start is not None:
        shape = _time_shape(start)
        start = _json_time_ns("start_time", start, scan)
    if end is not None:
        if shape is None:
            shape = _time_shape(end)
        if type(end) is float and scan is not None:
            if _beyond_us(scan):
                raise _NeedsExactParse
            scan = None
        end = _json_time_ns("end_time", end, scan)
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
            _type_unix_json_fields(fields, scan)
        else:
            _type_json_fields(fields, scan, shape)
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


def _type_unix_json_fields(fields: dict[str, Any], scan: bytes | None) -> None:
    """The common case of :func:`_type_json_fields`: orjson read a line whose times are
    unix numbers. Strings need no look, and every int orjson gives is in our range."""
    for key, value in fields.items():
        kind = type(value)
        if kind is str or kind is int:
            continue
        if kind is float:
            if scan is not None:
                if _beyond_us(scan):
                    raise _NeedsExactParse
                scan = None
            fields[key] = Timestamp(_float_ns(value))
        elif kind is list:
            _check_strlist(key, value)
        else:
            raise _not_a_field_type(key, value)


def _check_strlist(key: str, value: list[Any]) -> None:
    for item in value:
        if type(item) is not str:
            raise EventParseError(f"field {shown(key)}: an array value must hold only strings")


def _not_a_field_type(key: str, value: Any) -> EventParseError:
    return EventParseError(
        f"field {shown(key)}: {_json_kind(value)} is not a Dovecot field type "
        "(allowed: string, integer, number with a fraction, array of strings)"
    )


def _type_json_fields(fields: dict[str, Any], scan: bytes | None, shape: _TimeShape) -> None:
    """Turn JSON values into field values in place (keys and order stay).

    Numbers with a fraction are timestamps; strings are timestamps only when the line's
    own times are RFC 3339 strings with the same number of fraction digits. ``scan``: the
    raw line while floats read from it have not been checked for more than 6 decimals.
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
                raise EventParseError(f"field {shown(key)}: {value} does not fit in 64 bits")
        elif kind is float:
            if scan is not None:
                if _beyond_us(scan):
                    raise _NeedsExactParse
                scan = None
            fields[key] = Timestamp(_float_ns(value))
        elif kind is Decimal:
            fields[key] = Timestamp(_decimal_ns(f"field {shown(key)}", value))
        elif kind is list:
            _check_strlist(key, value)
        elif kind is _Unbounded:
            raise EventParseError(f"field {shown(key)}: {value}")
        else:
            raise _not_a_field_type(key, value)


def _json_time_ns(member: str, value: Any, scan: bytes | None) -> int:
    kind = type(value)
    if kind is float:
        if scan is not None and _beyond_us(scan):
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
    if kind is _Unbounded:
        raise EventParseError(
            f'"{member}": {printable(value.text, 40)} is out of range (years 1 to 9999)'
        )
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
    raise EventParseError(
        f"{what}: {printable(str(value), 40)} is not a timestamp in years 1 to 9999"
    )


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
        _Unbounded: "a number",
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
                raise EventParseError(f"field item {shown(item)} has no '='", here)
            key = tab_unescape(key)
            if key in fields:
                raise EventParseError(f"field {shown(key)} appears twice", here)
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
            raise EventParseError(f"unknown item {shown(item)} (allowed: {' '.join(_ITEMS)})", here)
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
        if _NOT_ESCAPED_TEXT.search(value) is not None:
            return value
        return [tab_unescape(piece) for piece in value.split("\t")]
    if value and value[0] in "-0123456789":
        if len(value) <= _MAX_INT_CHARS and _INT.match(value) and value != "-0":
            number = int(value)
            if INT_MIN <= number <= INT_MAX:
                return number
        elif time_text is not None and time_text.match(value):
            ns = parse_time_ns_or_none(value)
            if ns is not None:
                return Timestamp(ns)
    return value
