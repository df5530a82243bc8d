"""Dovecot's ``json`` format, byte for byte, on orjson: 2.3's or 2.4's.

orjson already escapes exactly as Dovecot 2.3 does (``\\"``, ``\\\\``, ``\\b \\f \\n \\r \\t``,
lower-case ``\\u00xx`` for other control bytes; DEL, ``/`` and non-ASCII raw). Two rules
remain, both handled off the common path:

* U+2028 and U+2029 are written ``\\u2028`` / ``\\u2029``: their UTF-8 bytes can only stand
  inside a string, so a bytes replace on the output is exact;
* an invalid UTF-8 byte (a lone surrogate in our strings) becomes U+FFFD. orjson refuses
  surrogates with TypeError, which is our signal to scrub and serialize again.

Dovecot 2.4 differs in two rules (``FormatSpec.dovecot_compat``): its ``\\u`` escapes have
upper-case hex (``\\u001B``: a regex over the escapes of the rare output that has one),
and its truncation cuts at ``>=`` on a character boundary (:func:`cut_at_character`).

Members come in Dovecot's fixed order: event, hostname, start_time, end_time, categories,
fields. Timestamps are strings (rfc3339) or bare numbers (unix, as ``orjson.Fragment`` so
the digits are exactly ours).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import orjson

from exporter.errors import EventFormatError
from exporter.event import Event, Fields
from exporter.formats.spec import ALL_INCLUDES, FormatSpec, Formatter
from exporter.formats.text import cut_at_character, cut_bytes, scrub_surrogates
from exporter.formats.timefmt import make_time_formatter


def make_json_formatter(spec: FormatSpec, *, newline: bool = False) -> Formatter:
    """A function writing one event as Dovecot json (plus ``\\n`` when ``newline``)."""
    fmt_time = make_time_formatter(spec.time_format, spec.time_precision)
    time_value: Callable[[int], object]
    if spec.time_format == "unix":
        fragment = orjson.Fragment

        def time_value(ns: int) -> object:
            return fragment(fmt_time(ns))
    else:
        time_value = fmt_time

    def default(obj: object) -> object:
        # orjson calls this only for types it does not know; anything but a Timestamp
        # has no .ns, and the AttributeError reaches us as orjson's TypeError.
        return time_value(obj.ns)  # type: ignore[attr-defined]

    dumps = orjson.dumps
    option = orjson.OPT_APPEND_NEWLINE if newline else 0
    want_name, want_host, want_times, want_cats, want_fields = spec.sections()
    keys = spec.fields
    limit = spec.truncate
    upper_hex = spec.dovecot_compat == "2.4"
    cut = cut_at_character if upper_hex else cut_bytes

    def members(event: Event) -> dict[str, Any]:
        """The members the include set asks for, in Dovecot's order."""
        out: dict[str, Any] = {}
        if want_name and event.name is not None:
            out["event"] = event.name
        if want_host and event.hostname is not None:
            out["hostname"] = event.hostname
        if want_times:
            if event.start_ns is not None:
                out["start_time"] = time_value(event.start_ns)
            if event.end_ns is not None:
                out["end_time"] = time_value(event.end_ns)
        if want_cats:
            out["categories"] = event.categories
        if want_fields:
            fields = event.fields
            if keys:
                fields = {key: fields[key] for key in keys if key in fields}
            if limit is not None:
                fields = _truncated(fields, limit, cut)
            out["fields"] = fields
        return out

    everything = spec.include == ALL_INCLUDES and not keys and limit is None
    # Dovecot stamps every event of one ioloop run with the same end_time: reuse its text
    # (inline, not remember_last(): a call costs as much as the comparison saves).
    last_end: int | None = None
    last_end_text: object = None

    def format_json(event: Event) -> bytes:
        nonlocal last_end, last_end_text
        name = event.name
        hostname = event.hostname
        start = event.start_ns
        end = event.end_ns
        if everything and name is not None and hostname is not None and start and end:
            if end != last_end:
                last_end_text = time_value(end)
                last_end = end
            out = {
                "event": name,
                "hostname": hostname,
                "start_time": time_value(start),
                "end_time": last_end_text,
                "categories": event.categories,
                "fields": event.fields,
            }
        else:
            out = members(event)
        try:
            data = dumps(out, default, option)
        except TypeError:
            data = _dumps_scrubbed(out, default, option)
        if 0xE2 in data:  # int membership is a memchr: far cheaper than a 2-byte search
            data = data.replace(b"\xe2\x80\xa8", b"\\u2028").replace(b"\xe2\x80\xa9", b"\\u2029")
        if upper_hex and b"\\u00" in data:
            data = _ESCAPE.sub(_upper_hex, data)
        return data

    return format_json


def _dumps_scrubbed(out: dict[str, Any], default: Callable[[object], object], option: int) -> bytes:
    """Serialize again with every lone surrogate (invalid byte) replaced by U+FFFD."""
    clean: dict[str, Any] = {}
    try:
        for member, value in out.items():
            if type(value) is str:
                clean[member] = scrub_surrogates(value)
            elif member == "categories":
                clean[member] = [scrub_surrogates(c) for c in value]
            elif member == "fields":
                clean[member] = _fields_fragment(value, default)
            else:
                clean[member] = value
        return orjson.dumps(clean, default, option)
    except TypeError as exc:
        if isinstance(exc.__cause__, EventFormatError):  # raised by default(): say why
            raise exc.__cause__ from None
        raise EventFormatError(f"cannot write event as json: {exc}") from None


def _fields_fragment(
    fields: dict[str, object], default: Callable[[object], object]
) -> orjson.Fragment:
    """The fields object written pair by pair: two keys that differ only in invalid
    bytes both become U+FFFD... and stay two members, as Dovecot writes them."""
    dumps = orjson.dumps
    pairs = [
        dumps(scrub_surrogates(key)) + b":" + dumps(_scrub_value(value), default)
        for key, value in fields.items()
    ]
    return orjson.Fragment(b"{" + b",".join(pairs) + b"}")


def _scrub_value(value: object) -> object:
    if type(value) is str:
        return scrub_surrogates(value)
    if type(value) is list:
        return [scrub_surrogates(item) for item in value]
    return value


# Every backslash of orjson's output starts an escape: matching escape by escape from the
# left, ``\\\\u001b`` (an escaped backslash, then text) is never read as an escape.
_ESCAPE = re.compile(rb"\\(?:u(00[0-9a-f]{2})|.)", re.DOTALL)


def _upper_hex(match: re.Match[bytes]) -> bytes:
    digits = match.group(1)
    return match.group(0) if digits is None else b"\\u" + digits.upper()


def _truncated(fields: Fields, limit: int, cut: Callable[[str, int], str | None]) -> Fields:
    """The log driver's rule: str values and strlist elements cut, ``...`` appended
    (``cut`` says where: Dovecot 2.3's byte cut or 2.4's character cut)."""
    result: Fields = {}
    for key, value in fields.items():
        if type(value) is str:
            short = cut(value, limit)
            result[key] = value if short is None else short + "..."
        elif type(value) is list:
            result[key] = [item if (c := cut(item, limit)) is None else c + "..." for item in value]
        else:
            result[key] = value
    return result
