"""Text that someone outside controls, made safe to print: a receiver's error body, a
sender's bad line, a peer's header.

Such text reaches log lines, dead-letter reasons and messages. Written raw, an ESC
sequence recolours or rewrites the operator's terminal, a newline forges a log line, a
bidi override hides what follows, and a megabyte of it floods the log. :func:`printable`
escapes every control character (C0, DEL, C1), the bidi controls and lone surrogates
(the raw bytes of invalid UTF-8, read with ``surrogateescape``), and caps the length.
"""

from __future__ import annotations

import re

DEFAULT_LIMIT = 200
"""Characters kept of one piece of outside text, before ``...``."""

# C0 controls, DEL, C1 controls, bidi embeddings/overrides/isolates, lone surrogates.
_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # a raw byte kept by surrogateescape
        return f"\\x{code - 0xDC00:02x}"
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}"


def printable(text: str, limit: int = DEFAULT_LIMIT) -> str:
    """``text`` with every unsafe character escaped (``\\x1b``, ``\\u202e``), cut to
    ``limit`` characters of the original (then ``...`` is appended)."""
    return _printable(text, limit, cut=False)


def printable_bytes(data: bytes | bytearray, limit: int = DEFAULT_LIMIT) -> str:
    """:func:`printable` of bytes: UTF-8 where it is, each other byte as ``\\xNN``."""
    head = bytes(data[: limit * 4])  # a character is at most 4 bytes: enough for ``limit``
    return _printable(head.decode("utf-8", "surrogateescape"), limit, cut=len(data) > len(head))


def _printable(text: str, limit: int, *, cut: bool) -> str:
    if len(text) > limit:
        text, cut = text[:limit], True
    text = _UNSAFE.sub(_escape, text)
    return text + "..." if cut else text


# In UTF-8: C0 controls but TAB and LF, DEL, C1 controls, the bidi controls.
_TERMINAL_UNSAFE = re.compile(
    rb"[\x00-\x08\x0b-\x1f\x7f]|\xc2[\x80-\x9f]|\xd8\x9c"
    rb"|\xe2\x80[\x8e\x8f\xaa-\xae]|\xe2\x81[\xa6-\xa9]"
)


def terminal_safe(data: bytes) -> bytes:
    """Formatted events as a terminal may show them: every control character (but the
    TAB and newline of the formats themselves) and bidi control written as ``\\xNN``, so
    a value cannot move the cursor, retitle the window or hide the text after it."""
    if not _TERMINAL_UNSAFE.search(data):
        return data
    return _TERMINAL_UNSAFE.sub(lambda m: b"".join(b"\\x%02x" % c for c in m.group()), data)
