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
from decimal import Decimal
from typing import Any, Final

import orjson

from exporter.errors import EventParseError
from exporter.event import INT_MAX, INT_MIN, Event, Fields, Timestamp
from exporter.formats.text import from_bytes, tab_escape, tab_unescape
from exporter.formats.timefmt import parse_rfc3339_ns, parse_time_ns, parse_unix_ns

_MEMBERS: Final = ("event", "hostname", "start_time", "end_time", "categories", "fields")
_MEMBER_SET: Final = frozenset(_MEMBERS)
_ITEMS: Final = ("event:", "hostname:", "start_time:", "end_time:", "category:", "field:")
_EXACT_FLOAT_LIMIT: Final = 2.0**32  # below this, round(f * 1e6) recovers 6 decimals exactly
_MORE_THAN_US = re.compile(rb"[0-9]\.[0-9]{7}")
_INT = re.compile(r"-?(?:0|[1-9][0-9]*)\Z")
_UNIX_US = re.compile(r"-?[0-9]+\.[0-9]{6}\Z")
_RFC3339_US = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z\Z")


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
        return _event_from_json(_loads_exact(line), None, exact=True)
    try:
        return _event_from_json(obj, line)
    except _NeedsExactParse:
        return _event_from_json(_loads_exact(line), None, exact=True)


def _digits_beyond_us(line: bytes, member: bytes) -> bool:
    """Whether the number after ``member`` in the raw line has more than 6 decimals.

    A float cannot tell 1795304520.099772 from 1795304520.0997721, so the raw text
    decides; Dovecot's 6 digits stay on the fast float path.
    """
    start = line.find(member) + len(member)
    dot = line.find(b".", start, start + 32)
    return dot >= 0 and line[dot + 7 : dot + 8].isdigit()


def _loads_exact(line: bytes) -> Any:
    """The slow reader: keeps invalid UTF-8 (as surrogates) and reads numbers exactly."""
    try:
        return json.loads(from_bytes(line), parse_float=Decimal, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise EventParseError(f"not valid JSON: {exc.msg}", exc.colno) from None


def _no_constant(name: str) -> Any:
    raise json.JSONDecodeError(f"{name} is not allowed", name, 0)


def _event_from_json(obj: Any, line: bytes | None, exact: bool = False) -> Event:
    """``line`` is the raw text while float numbers are not shown exact yet; ``exact``
    when the numbers were read as Decimal."""
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
    # Float times: exact through round(x * 1e6) when the text had at most 6 decimals,
    # which the raw digits after start_time (or end_time) tell.
    unix_times = False
    if type(start) is float:
        if line is not None:
            at = line.find(b'"start_time":') + 13
            dot = line.find(b".", at, at + 32)
            if dot > 0 and line[dot + 7 : dot + 8].isdigit():
                raise _NeedsExactParse
            line = None  # one exporter writes every time at one precision: floats are exact
        if not -_EXACT_FLOAT_LIMIT < start < _EXACT_FLOAT_LIMIT:
            raise _NeedsExactParse
        start = round(start * 1e6) * 1000
        unix_times = True
    elif start is not None:
        unix_times = type(start) is not str
        start = _json_time_ns("start_time", start)
    if type(end) is float:
        if line is not None and _digits_beyond_us(line, b'"end_time":'):
            raise _NeedsExactParse
        if not -_EXACT_FLOAT_LIMIT < end < _EXACT_FLOAT_LIMIT:
            raise _NeedsExactParse
        end = round(end * 1e6) * 1000
        unix_times = True
    elif end is not None:
        unix_times = unix_times or type(end) is not str
        end = _json_time_ns("end_time", end)
    if type(categories) is list:
        for category in categories:
            if type(category) is not str:
                raise EventParseError('"categories" must be an array of strings')
    elif categories is None:
        categories = []
    else:
        raise EventParseError('"categories" must be an array of strings')
    if type(fields) is dict:
        if unix_times and line is None and not exact:
            _type_unix_json_fields(fields)
        else:
            # A line whose own times are numbers was written with unix times: Dovecot
            # wrote its timeval fields as numbers too, so no string there is a timestamp.
            _type_json_fields(fields, line, not unix_times)
    elif fields is None:
        fields = {}
    else:
        raise EventParseError(f'"fields" must be an object, not {_json_kind(fields)}')
    return Event(name, hostname, start, end, categories, fields)


def _type_unix_json_fields(fields: dict[str, Any]) -> None:
    """The common case of :func:`_type_json_fields`: orjson read the line, its times were
    unix numbers with at most six decimals. Strings need no look, and every int orjson
    gives is in our range."""
    for key, value in fields.items():
        kind = type(value)
        if kind is str or kind is int:
            continue
        if kind is float:
            if not -_EXACT_FLOAT_LIMIT < value < _EXACT_FLOAT_LIMIT:
                raise _NeedsExactParse
            fields[key] = Timestamp(round(value * 1e6) * 1000)
        elif kind is list:
            for item in value:
                if type(item) is not str:
                    raise EventParseError(f"field {key!r}: an array value must hold only strings")
        else:
            raise _not_a_field_type(key, value)


def _not_a_field_type(key: str, value: Any) -> EventParseError:
    return EventParseError(
        f"field {key!r}: {_json_kind(value)} is not a Dovecot field type "
        "(allowed: string, integer, number with a fraction, array of strings)"
    )


def _type_json_fields(fields: dict[str, Any], line: bytes | None, look_for_times: bool) -> None:
    """Turn JSON values into field values in place (keys and order stay).

    ``line`` is set while float values have not been shown exact yet; RFC 3339 strings
    are made timestamps only when ``look_for_times``.
    """
    for key, value in fields.items():
        kind = type(value)
        if kind is str:
            if look_for_times and len(value) == 27 and _RFC3339_US.match(value):
                ns = parse_rfc3339_ns(value)
                if ns is not None:
                    fields[key] = Timestamp(ns)
        elif kind is int:
            if value > INT_MAX or value < INT_MIN:
                raise EventParseError(f"field {key!r}: {value} does not fit in 64 bits")
        elif kind is float or kind is Decimal:
            if line is not None:
                if _MORE_THAN_US.search(line):
                    raise _NeedsExactParse
                line = None
            fields[key] = Timestamp(_number_ns(value))
        elif kind is list:
            for item in value:
                if type(item) is not str:
                    raise EventParseError(f"field {key!r}: an array value must hold only strings")
        else:
            raise _not_a_field_type(key, value)


def _json_time_ns(member: str, value: Any) -> int:
    kind = type(value)
    if kind is Decimal:
        return _number_ns(value)
    if kind is int:
        return value * 1_000_000_000  # type: ignore[no-any-return]
    if kind is str:
        try:
            return parse_time_ns(value)
        except EventParseError as exc:
            raise EventParseError(f'"{member}": {exc}') from None
    raise EventParseError(f'"{member}" must be a number or a string, not {_json_kind(value)}')


def _number_ns(value: float | Decimal) -> int:
    """Unix seconds to integer nanoseconds with no float error.

    A float reaches here only when its text had at most 6 decimals and is small enough
    for ``round(value * 1e6)`` to give those digits back exactly.
    """
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise EventParseError(f"{value} is not a timestamp")
        return int((value * 1_000_000_000).to_integral_value())
    if -_EXACT_FLOAT_LIMIT < value < _EXACT_FLOAT_LIMIT:
        return round(value * 1e6) * 1000
    raise _NeedsExactParse


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
    time_kind = ""  # "unix" or "rfc3339" once a start/end time was seen
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
            fields[tab_unescape(key)] = _tab_value(raw, time_kind)
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
            time_kind = "rfc3339" if value.endswith("Z") else "unix"
            if member == "start_time":
                event.start_ns = ns
            else:
                event.end_ns = ns
        else:
            raise EventParseError(
                f"unknown item {_clip(item)!r} (allowed: {' '.join(_ITEMS)})", here
            )
    return event


def _tab_value(raw: str, time_kind: str) -> str | int | Timestamp | list[str]:
    value = tab_unescape(raw)
    if "\t" in value or "\x01" in value:
        # A strlist if every piece is itself escaped text (so writing it back is exact).
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
        elif time_kind != "rfc3339" and _UNIX_US.match(value):
            return Timestamp(parse_unix_ns(value))  # type: ignore[arg-type]
        elif time_kind != "unix" and _RFC3339_US.match(value):
            ns = parse_rfc3339_ns(value)
            if ns is not None:
                return Timestamp(ns)
    return value


def _clip(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit] + "..."
