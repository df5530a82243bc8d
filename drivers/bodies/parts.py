"""The parts of a formatted json event a collector's envelope names: its time, exact.

A batch holds our json lines; a body that needs an event's time, host or name reads the
line back (``orjson.loads``, ~1 us). The time is read from the line's own text, not from
the float orjson makes of a unix timestamp, so that it is the nanoseconds written, whatever
the exporter's ``time_format`` and ``time_precision`` (:mod:`exporter.formats.timefmt`).
"""

from __future__ import annotations

import re
import time
from typing import Any

import orjson

from exporter.errors import PermanentDeliveryError
from exporter.formats.timefmt import parse_time_ns_or_none

_TIME_KEYS = ("end_time", "start_time")
"""Dovecot's event time is its end_time (when it was emitted); start_time if only it is there."""
_NUMBER = re.compile(rb"-?[0-9]+(?:\.[0-9]+)?")


def event_time_ns(line: bytes, event: dict[str, Any]) -> int | None:
    """The event's time in nanoseconds, exactly as ``line`` writes it (``event`` is the
    line read back); None when it has no time (``include`` without timestamps)."""
    for key in _TIME_KEYS:
        value = event.get(key)
        if isinstance(value, str):
            return parse_time_ns_or_none(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return _unix_ns(line, key.encode(), value)
    return None


def _unix_ns(line: bytes, key: bytes, value: float) -> int | None:
    """A unix timestamp's nanoseconds from its text: members come in Dovecot's order
    (event, hostname, start_time, end_time, categories, fields), and a string cannot hold
    ``"KEY":`` unescaped, so its first occurrence is the top-level member; checked against
    the value read, else the float decides (to the microsecond)."""
    at = line.find(b'"' + key + b'":')
    if at >= 0:
        match = _NUMBER.match(line, at + len(key) + 3)
        if match is not None and float(match.group()) == value:
            return parse_time_ns_or_none(match.group().decode("ascii"))
    return round(value * 1_000_000) * 1000


def time_ns_or_now(line: bytes, event: dict[str, Any]) -> int:
    """:func:`event_time_ns`, or the time now for an event that has none."""
    found = event_time_ns(line, event)
    return time.time_ns() if found is None else found


def read_event(line: bytes) -> dict[str, Any]:
    """A formatted json event read back; a PermanentDeliveryError (the batch goes to the
    dead letters, with why) if it is not a JSON object: the body needs json events."""
    try:
        event = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise PermanentDeliveryError(f"not a json event ({exc}): the body needs json") from None
    if not isinstance(event, dict):
        raise PermanentDeliveryError("not a json event (not an object): the body needs json")
    return event
