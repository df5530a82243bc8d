"""Outside text made printable: no control character, no bidi control, bounded length."""

from __future__ import annotations

import unicodedata

from hypothesis import given
from hypothesis import strategies as st

from exporter.observe.text import printable, printable_bytes

_BIDI = set("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _unsafe(text: str) -> bool:
    """An independent oracle: controls and surrogates by Unicode category, bidi by list."""
    return any(unicodedata.category(c) in ("Cc", "Cs") or c in _BIDI for c in text)


@given(st.text(), st.integers(min_value=1, max_value=300))
def test_printable_has_no_unsafe_character_and_a_bounded_length(text: str, limit: int) -> None:
    out = printable(text, limit)
    assert not _unsafe(out)
    assert len(out) <= limit * 6 + 3  # each kept character escapes to at most 6
    if len(text) <= limit and not _unsafe(text):
        assert out == text


@given(st.binary(max_size=2000))
def test_printable_bytes_shows_raw_bytes_as_escapes(data: bytes) -> None:
    out = printable_bytes(data, 100)
    assert not _unsafe(out)
    assert len(out) <= 100 * 6 + 3


def test_what_a_terminal_or_a_log_reader_would_act_on_is_escaped() -> None:
    assert printable("ok\x1b[2J\r\nFAKE LOG LINE") == "ok\\x1b[2J\\x0d\\x0aFAKE LOG LINE"
    assert printable("abc\u202edcba") == "abc\\u202edcba"
    assert printable_bytes(b"caf\xc3\xa9 \xff") == "caf\u00e9 \\xff"
    assert printable("x" * 201) == "x" * 200 + "..."
    assert printable_bytes(b"y" * 1000, 10) == "y" * 10 + "..."
