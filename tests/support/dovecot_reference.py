"""Slow, literal re-statements of Dovecot's escaping rules, to check the fast code against.

Written from the rules in the specification (json_append_escaped_data, the UTF-8 check in
unichar.c, str_append_tabescaped), byte by byte, sharing nothing with exporter.formats.
"""

from __future__ import annotations

_SHORT_ESCAPES = {0x08: b"\\b", 0x0C: b"\\f", 0x0A: b"\\n", 0x0D: b"\\r", 0x09: b"\\t"}
_TAB_ESCAPES = {0x00: b"\x010", 0x01: b"\x011", 0x09: b"\x01t", 0x0A: b"\x01n", 0x0D: b"\x01r"}


def _valid_sequence_length(data: bytes, i: int) -> int:
    """Length of the complete, shortest-form, non-surrogate UTF-8 sequence at i, else 0."""
    lead = data[i]
    if lead < 0x80:
        return 1
    if 0xC2 <= lead <= 0xDF:
        need, low, high = 1, 0x80, 0xBF
    elif 0xE0 <= lead <= 0xEF:
        need = 2
        low, high = {0xE0: (0xA0, 0xBF), 0xED: (0x80, 0x9F)}.get(lead, (0x80, 0xBF))
    elif 0xF0 <= lead <= 0xF4:
        need = 3
        low, high = {0xF0: (0x90, 0xBF), 0xF4: (0x80, 0x8F)}.get(lead, (0x80, 0xBF))
    else:
        return 0
    if i + need >= len(data):  # truncated: the continuation bytes are not all there
        return 0
    second = data[i + 1]
    if not low <= second <= high:
        return 0
    for k in range(2, need + 1):
        if not 0x80 <= data[i + k] <= 0xBF:
            return 0
    return need + 1


def dovecot_json_string(data: bytes) -> bytes:
    """A JSON string literal for a byte string, as Dovecot 2.3 writes it."""
    out = bytearray(b'"')
    i = 0
    while i < len(data):
        length = _valid_sequence_length(data, i)
        if length == 0:
            out += "\ufffd".encode()
            i += 1
            continue
        chunk = data[i : i + length]
        code = ord(chunk.decode("utf-8"))
        if code == 0x22:
            out += b'\\"'
        elif code == 0x5C:
            out += b"\\\\"
        elif code in _SHORT_ESCAPES:
            out += _SHORT_ESCAPES[code]
        elif code < 0x20 or code in (0x2028, 0x2029):
            out += b"\\u%04x" % code
        else:
            out += chunk
        i += length
    out += b'"'
    return bytes(out)


def dovecot_tab_escape(data: bytes) -> bytes:
    """str_append_tabescaped: five bytes escaped with \\x01, everything else raw."""
    return b"".join(_TAB_ESCAPES.get(byte, bytes([byte])) for byte in data)
