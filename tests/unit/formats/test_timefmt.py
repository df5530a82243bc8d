"""Timestamp text at every format and precision, and reading it back."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exporter.errors import UsageError
from exporter.formats.timefmt import (
    make_time_formatter,
    parse_rfc3339_ns,
    parse_time_ns,
    parse_unix_ns,
)

NS = 1_795_304_520_099_772_345


@pytest.mark.parametrize(
    ("time_format", "precision", "text"),
    [
        ("unix", "s", "1795304520"),
        ("unix", "ms", "1795304520.099"),
        ("unix", "us", "1795304520.099772"),
        ("unix", "ns", "1795304520.099772345"),
        ("rfc3339", "s", "2026-11-21T23:42:00Z"),
        ("rfc3339", "ms", "2026-11-21T23:42:00.099Z"),
        ("rfc3339", "us", "2026-11-21T23:42:00.099772Z"),
        ("rfc3339", "ns", "2026-11-21T23:42:00.099772345Z"),
    ],
)
def test_formats_truncate_never_round(time_format: str, precision: str, text: str) -> None:
    assert make_time_formatter(time_format, precision)(NS) == text


def test_trailing_zeros_kept() -> None:
    assert make_time_formatter("unix")(1_795_304_520_100_000_000) == "1795304520.100000"


def test_negative_unix_time_is_sign_and_magnitude() -> None:
    assert make_time_formatter("unix")(-1_500_000_000) == "-1.500000"
    assert make_time_formatter("rfc3339")(-1_500_000_000) == "1969-12-31T23:59:58.500000Z"


def test_unknown_format_or_precision_is_refused() -> None:
    with pytest.raises(UsageError, match="allowed: rfc3339, unix"):
        make_time_formatter("iso")
    with pytest.raises(UsageError, match="allowed: s, ms, us, ns"):
        make_time_formatter("unix", "ps")


@given(st.integers(min_value=-62_135_596_800 * 10**9, max_value=253_402_300_799 * 10**9))
def test_rfc3339_matches_datetime_and_reads_back(ns: int) -> None:
    text = make_time_formatter("rfc3339", "ns")(ns)
    sec, sub = divmod(ns, 10**9)
    expected = dt.datetime(1970, 1, 1) + dt.timedelta(seconds=sec)
    assert text == f"{expected.year:04d}-" + expected.strftime("%m-%dT%H:%M:%S") + f".{sub:09d}Z"
    assert parse_rfc3339_ns(text) == ns
    assert parse_time_ns(text) == ns


@given(st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_unix_reads_back(ns: int) -> None:
    assert parse_unix_ns(make_time_formatter("unix", "ns")(ns)) == ns


@pytest.mark.parametrize(
    "text", ["2026-13-01T00:00:00Z", "2026-02-30T00:00:00Z", "2026-01-01T24:00:00Z", "x", ""]
)
def test_not_timestamps(text: str) -> None:
    assert parse_rfc3339_ns(text) is None
