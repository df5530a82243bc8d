"""Hypothesis strategies for events."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final

from hypothesis import strategies as st

from exporter.event import INT_MAX, INT_MIN, Event, FieldValue, Timestamp
from exporter.formats.text import from_bytes

# From year 1 to year 9999: what RFC 3339 can write with four year digits.
MIN_NS: Final = -62_135_596_800 * 10**9
MAX_NS: Final = 253_402_300_799 * 10**9 + 999_999_999
_LOOKS_TYPED = re.compile(r"-?[0-9]+(\.[0-9]{6})?|[0-9]{4}-.*Z", re.DOTALL)

# Any bytes, kept as surrogates where they are not UTF-8 (what tab-text can carry).
any_bytes_text = st.binary(max_size=12).map(from_bytes)
# Valid Unicode without surrogates (what JSON can carry both ways).
unicode_text = st.text(max_size=12)


def times(granularity_ns: int) -> st.SearchStrategy[int]:
    return st.integers(MIN_NS // granularity_ns, MAX_NS // granularity_ns).map(
        lambda n: n * granularity_ns
    )


def events(
    text: st.SearchStrategy[str],
    *,
    granularity_ns: int = 1_000,
    plain_values: bool = False,
    with_times: bool = False,
) -> st.SearchStrategy[Event]:
    """Flat events. ``plain_values``: only values whose type survives tab-text's guessing;
    ``with_times``: a start time always (a line's own times tell how to read its values)."""
    stamp = times(granularity_ns)
    str_value = text.filter(lambda s: not _LOOKS_TYPED.fullmatch(s))
    if plain_values:
        str_value = str_value.filter(lambda s: "\t" not in s and "\x01" not in s)
        element = str_value
        strlist = st.lists(element, min_size=2, max_size=4, unique=True)
    else:
        strlist = st.lists(text, max_size=4, unique=True)
    value: st.SearchStrategy[FieldValue] = st.one_of(
        str_value,
        st.integers(INT_MIN, INT_MAX),
        stamp.map(Timestamp),
        strlist,
    )
    key = text.filter(lambda k: "=" not in k)
    build: Callable[..., Event] = Event
    return st.builds(
        build,
        st.none() | text,
        hostname=st.none() | text,
        start_ns=stamp if with_times else st.none() | stamp,
        end_ns=st.none() | stamp,
        categories=st.lists(text, max_size=3),
        fields=st.dictionaries(key, value, max_size=6),
    )
