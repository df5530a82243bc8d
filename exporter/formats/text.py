"""Byte-level text rules shared by the formats and the readers.

Event strings hold bytes that were not valid UTF-8 as lone surrogates U+DC80..U+DCFF
(Python's ``surrogateescape``): one surrogate per invalid byte, which is exactly the
unit Dovecot replaces with U+FFFD in JSON and keeps raw in tab-text.
"""

from __future__ import annotations

import re
from typing import Final

from exporter.observe.text import printable

# Dovecot's str_append_tabescaped / str_tabunescape.
_TAB_ESCAPES: Final = {0x00: "\x010", 0x01: "\x011", 0x09: "\x01t", 0x0A: "\x01n", 0x0D: "\x01r"}
_TAB_UNESCAPES: Final = {"0": "\x00", "1": "\x01", "t": "\t", "n": "\n", "r": "\r"}
_TAB_ESCAPED = re.compile("\x01(.)", re.DOTALL)
_LONE_ESCAPE = re.compile("\x01(?![01tnr])")
_SURROGATE = re.compile("[\ud800-\udfff]")
TAB_SPECIALS: Final = ("\x00", "\x01", "\t", "\n", "\r")


def tab_escape(text: str) -> str:
    """Escape \\x00 \\x01 TAB LF CR as \\x01 + 0/1/t/n/r; every other byte is kept."""
    if text.isprintable():  # all five specials are non-printable: nothing to do
        return text
    return text.translate(_TAB_ESCAPES)


def tab_unescape(text: str) -> str:
    """Undo :func:`tab_escape`; an \\x01 before any other character is kept as is."""
    if "\x01" not in text:
        return text
    if _LONE_ESCAPE.search(text) is None:  # every \x01 starts an escape: no callback per one
        return (
            text.replace("\x010", "\x00")
            .replace("\x01t", "\t")
            .replace("\x01n", "\n")
            .replace("\x01r", "\r")
            .replace("\x011", "\x01")  # last: the \x01 it gives back must not start another
        )
    return _TAB_ESCAPED.sub(lambda m: _TAB_UNESCAPES.get(m.group(1), m.group(0)), text)


def raw_bytes(text: str) -> bytes:
    """The bytes a string stands for: surrogate-escaped bytes raw, other surrogates U+FFFD."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return _SURROGATE.sub(_keep_escaped_byte, text).encode("utf-8", "surrogateescape")


def _keep_escaped_byte(m: re.Match[str]) -> str:
    return m.group(0) if "\udc80" <= m.group(0) <= "\udcff" else "\ufffd"


def from_bytes(data: bytes) -> str:
    """Bytes to an event string, keeping invalid UTF-8 bytes as surrogates."""
    return data.decode("utf-8", "surrogateescape")


def scrub_surrogates(text: str) -> str:
    """Each lone surrogate (an invalid byte) becomes U+FFFD, as in Dovecot's JSON."""
    return _SURROGATE.sub("\ufffd", text)


def cut_bytes(text: str, limit: int) -> str | None:
    """The first ``limit`` bytes of ``text`` if it is longer than that, else None.

    The cut is a byte cut, as in Dovecot: it may split a UTF-8 sequence, whose leading
    bytes then stand as invalid bytes (surrogates) in the result.
    """
    if len(text) <= limit // 4:  # at most 4 bytes a character: cannot be too long
        return None
    data = raw_bytes(text)
    if len(data) <= limit:
        return None
    return from_bytes(data[:limit])


def cut_at_character(text: str, limit: int) -> str | None:
    """Dovecot 2.4's cut (``uni_utf8_data_truncate``): None if ``text`` is shorter than
    ``limit`` bytes; else its first ``limit`` bytes moved back to a character boundary.

    2.4 cuts at ``>=``: a value of exactly ``limit`` bytes comes back whole (and gets
    ``...`` although nothing was cut). When the byte at the limit is not ASCII, the cut
    steps back over continuation bytes and then drops their lead byte too, so a complete
    multibyte character just before the limit goes as well.
    """
    if len(text) < limit // 4:  # at most 4 bytes a character: cannot reach the limit
        return None
    data = raw_bytes(text)
    if len(data) < limit:
        return None
    return from_bytes(data[: utf8_cut_point(data, limit)])


def utf8_cut_point(data: bytes, limit: int) -> int:
    """How many bytes of ``data`` ``uni_utf8_data_truncate(data, len, limit)`` keeps."""
    if limit >= len(data):
        return len(data)
    if limit == 0 or data[limit] < 0x80:
        return limit
    cut = limit
    while cut > 0 and data[cut - 1] & 0xC0 == 0x80:
        cut -= 1
    if cut > 0 and data[cut - 1] & 0xC0 == 0xC0:
        cut -= 1
    return cut


def shown(text: str, limit: int = 40) -> str:
    """``text`` from a line, quoted for an error message: controls escaped, cut to
    ``limit`` characters, so a hostile line cannot write escapes or megabytes to a log."""
    return "'" + printable(text, limit) + "'"
