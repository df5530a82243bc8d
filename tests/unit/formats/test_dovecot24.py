"""Dovecot 2.4's bytes (``dovecot_compat = "2.4"``) beside 2.3's: the real 2.4.4 capture,
upper-case ``\\uXXXX`` hex, and the log driver's UTF-8 aware truncation."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exporter.cli import main
from exporter.config import ConfigError, parse_config
from exporter.event import Event
from exporter.formats import FormatSpec, make_formatter
from exporter.formats.reader import read_event
from exporter.formats.text import cut_at_character, from_bytes, utf8_cut_point
from tests.support.samples import (
    CONFIGS,
    CONFIGS_24,
    EVENTS_24_FILE,
    EVENTS_FILE,
    expected_bodies,
    expected_file_24,
    sample_events_24,
    spec_for_24,
)


def _export(tmp_path: Path, *args: str) -> bytes:
    out = tmp_path / "out"
    assert main(["export", "--output", str(out), *args]) == 0
    return out.read_bytes()


# -- the real captures, through `export` ---------------------------------------------------


@pytest.mark.parametrize("config", sorted(CONFIGS_24))
def test_every_2_4_sample_configuration_byte_for_byte(tmp_path: Path, config: str) -> None:
    """Dovecot 2.4.4's file driver wrote each event then "\\n", in event order: so do we."""
    fmt, time_format, include, fields = CONFIGS_24[config]
    args = ["--dovecot-compat", "2.4", "--format", fmt, "--time-format", time_format]
    args += ["--include", include] + (["--fields", fields] if fields else [])
    assert _export(tmp_path, *args, str(EVENTS_24_FILE)) == expected_file_24(config)


@pytest.mark.parametrize("config", sorted(CONFIGS_24))
def test_2_4_formatter_and_reader_on_the_capture(config: str) -> None:
    """The formatter alone gives the same bytes, and each body read back writes itself."""
    fmt = make_formatter(spec_for_24(config), newline=True)
    assert b"".join(fmt(event) for event in sample_events_24()) == expected_file_24(config)
    plain = make_formatter(spec_for_24(config))
    for body in expected_file_24(config).splitlines():
        assert plain(read_event(body)) == body


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_every_2_3_sample_configuration_still_with_compat_2_3(tmp_path: Path, config: str) -> None:
    """The 2.3 capture (36 bodies in the capture's order, see test_dovecot_samples): each of
    ours is one Dovecot wrote, but for the two events the capture order swapped in."""
    fmt, time_format, include = CONFIGS[config]
    out = _export(
        tmp_path,
        *("--dovecot-compat", "2.3", "--format", fmt, "--time-format", time_format),
        *("--include", include, str(EVENTS_FILE)),
    )
    ours = Counter(out[:-1].split(b"\n"))
    theirs = Counter(expected_bodies(config))
    assert sum(ours.values()) == 36
    assert sum((ours - theirs).values()) <= 2


# -- escapes ---------------------------------------------------------------------------------


def _json_field(value: str, compat: str, **spec: object) -> bytes:
    event = Event(fields={"k": value})
    return make_formatter(
        FormatSpec(include=frozenset({"fields"}), dovecot_compat=compat, **spec)  # type: ignore[arg-type]
    )(event)


LETTER_ESCAPES = [0x0B, 0x0E, 0x0F, *range(0x1A, 0x20)]


@pytest.mark.parametrize("byte", LETTER_ESCAPES)
def test_2_4_writes_upper_case_hex_where_2_3_writes_lower_case(byte: int) -> None:
    value = f"r{chr(byte)}l"
    assert _json_field(value, "2.3") == f'{{"fields":{{"k":"r\\u00{byte:02x}l"}}}}'.encode()
    assert _json_field(value, "2.4") == f'{{"fields":{{"k":"r\\u00{byte:02X}l"}}}}'.encode()


def test_2_4_escape_example_of_the_issue() -> None:
    assert _json_field("r\x1bl", "2.3") == b'{"fields":{"k":"r\\u001bl"}}'
    assert _json_field("r\x1bl", "2.4") == b'{"fields":{"k":"r\\u001Bl"}}'


def test_2_4_upper_cases_escapes_only_not_text_that_looks_like_one() -> None:
    """A backslash in the value is written ``\\\\``: the text after it is not an escape."""
    value = "\\u001b \\\x1b \x01 \n \u2028 \x7f \u00e9"
    assert _json_field(value, "2.4") == (
        b'{"fields":{"k":"\\\\u001b \\\\\\u001B \\u0001 \\n \\u2028 \x7f \xc3\xa9"}}'
    )


def test_2_4_upper_cases_escapes_in_names_keys_categories_and_lists() -> None:
    event = Event("e\x1f", "h\x1e", None, None, ["c\x1d"], {"k\x1c": ["v\x1a"]})
    out = make_formatter(FormatSpec(dovecot_compat="2.4"))(event)
    assert out == (
        b'{"event":"e\\u001F","hostname":"h\\u001E","categories":["c\\u001D"],'
        b'"fields":{"k\\u001C":["v\\u001A"]}}'
    )
    assert read_event(out) == event  # the reader takes upper-case hex


def test_2_4_invalid_bytes_are_replaced_one_by_one_as_in_2_3() -> None:
    """lib-json's generator replaces each invalid byte with U+FFFD, as 2.3's escaper."""
    value = from_bytes(b"\xff\xfe\xc0\xaf\xed\xa0\x80\x1b\xc3")
    assert _json_field(value, "2.4") == (
        b'{"fields":{"k":"' + b"\xef\xbf\xbd" * 7 + b'\\u001B\xef\xbf\xbd"}}'
    )


# -- truncation ------------------------------------------------------------------------------

LIMIT = 1000


def _cut_json(value: str, compat: str) -> bytes:
    out = _json_field(value, compat, truncate=LIMIT)
    prefix, suffix = b'{"fields":{"k":"', b'"}}'
    assert out.startswith(prefix)
    assert out.endswith(suffix)
    return out[len(prefix) : -len(suffix)]


def test_a_value_of_exactly_the_limit_gets_dots_in_2_4_only() -> None:
    value = "a" * LIMIT
    assert _cut_json(value, "2.3") == b"a" * LIMIT
    assert _cut_json(value, "2.4") == b"a" * LIMIT + b"..."
    assert _cut_json("a" * (LIMIT - 1), "2.4") == b"a" * (LIMIT - 1)


def test_a_cut_inside_a_character_moves_back_to_its_start_in_2_4() -> None:
    """2.3 cuts the byte sequence and writes U+FFFD for the dangling lead byte."""
    value = "a" * (LIMIT - 1) + "\u00fc" + "b"  # the limit falls inside the two-byte ü
    assert _cut_json(value, "2.3") == b"a" * (LIMIT - 1) + b"\xef\xbf\xbd..."
    assert _cut_json(value, "2.4") == b"a" * (LIMIT - 1) + b"..."


def test_a_complete_character_before_a_non_ascii_limit_byte_is_dropped_in_2_4() -> None:
    """``uni_utf8_data_truncate``: the byte at the limit starts a character, and the
    complete two-byte character before it goes too."""
    value = "a" * (LIMIT - 2) + "\u00e9" + "\u00fc"  # é ends exactly at the limit
    assert _cut_json(value, "2.3") == b"a" * (LIMIT - 2) + "\u00e9".encode() + b"..."
    assert _cut_json(value, "2.4") == b"a" * (LIMIT - 2) + b"..."
    after_ascii = "a" * LIMIT + "\u00fc"  # an ASCII byte before the limit stays
    assert _cut_json(after_ascii, "2.4") == b"a" * LIMIT + b"..."


def test_2_4_cuts_string_list_elements_and_keeps_tab_text_on_2_3s_rule() -> None:
    value = "a" * (LIMIT - 1) + "\u00fc"
    event = Event(fields={"k": value, "l": [value, "x"]})
    json_out = make_formatter(
        FormatSpec(include=frozenset({"fields"}), truncate=LIMIT, dovecot_compat="2.4")
    )(event)
    cut = b'"' + b"a" * (LIMIT - 1) + b'..."'
    assert json_out == b'{"fields":{"k":' + cut + b',"l":[' + cut + b',"x"]}}'
    for compat in ("2.3", "2.4"):
        tab = make_formatter(
            FormatSpec(
                format="tab-text",
                include=frozenset({"fields"}),
                truncate=LIMIT,
                dovecot_compat=compat,
            )
        )(Event(fields={"k": value}))
        assert tab == b"field:k=" + b"a" * (LIMIT - 1) + b"\xc3..."


# An independent statement of uni_utf8_data_truncate over bytes: what is kept of the first
# ``limit`` bytes is all but a trailing run of continuation bytes and the lead byte before
# it, unless the byte at the limit is ASCII (or there is none).
_TRAILING = re.compile(rb"(?:[\xc0-\xff])?[\x80-\xbf]*\Z")


def _statement(data: bytes, limit: int) -> int:
    if limit >= len(data):
        return len(data)
    if data[limit] < 0x80:
        return limit
    head = data[:limit]
    found = _TRAILING.search(head)
    assert found is not None
    return found.start()


_utf8ish = st.lists(
    st.one_of(
        st.text(max_size=6).map(lambda s: s.encode()),
        st.binary(max_size=3),
        st.sampled_from([b"\xc3\xa9", b"\xe2\x82\xac", b"\xf0\x9f\x98\x80", b"\x80", b"\xc3"]),
    ),
    max_size=12,
).map(b"".join)


@given(data=_utf8ish, limit=st.integers(min_value=0, max_value=40))
def test_cut_point_agrees_with_an_independent_statement(data: bytes, limit: int) -> None:
    assert utf8_cut_point(data, limit) == _statement(data, limit)


@given(text=st.text(max_size=30), limit=st.integers(min_value=1, max_value=40))
def test_a_2_4_cut_of_valid_utf8_is_valid_and_at_most_the_limit(text: str, limit: int) -> None:
    data = text.encode()
    cut = cut_at_character(text, limit)
    if len(data) < limit:
        assert cut is None
        return
    assert cut is not None
    kept = cut.encode()  # valid UTF-8: no surrogate left by the cut
    assert len(kept) <= limit
    assert data.startswith(kept)
    if len(data) == limit:
        assert kept == data


# -- where the dialect comes from ----------------------------------------------------------


def _spec_of(text: str) -> FormatSpec:
    config = parse_config(text)
    return config.exporters["x"].spec


@pytest.mark.parametrize(
    ("global_block", "exporter_key", "compat"),
    [
        ("", "", "2.4"),
        ('dovecot_version = "2.3.21"', "", "2.3"),
        ('dovecot_version = "2.4.1"', "", "2.4"),
        ('dovecot_version = "2.3.21"', 'dovecot_compat = "2.4"', "2.4"),
        ("", 'dovecot_compat = "2.3"', "2.3"),
    ],
)
def test_dovecot_compat_follows_dovecot_version_unless_given(
    global_block: str, exporter_key: str, compat: str
) -> None:
    text = f'[global]\n{global_block}\n[exporter.x]\ndestination = "drop"\n{exporter_key}\n'
    assert _spec_of(text).dovecot_compat == compat


def test_an_unknown_dovecot_compat_says_where_and_what_is_allowed() -> None:
    with pytest.raises(
        ConfigError,
        match=r"^config:3: exporter\.x\.dovecot_compat: '2\.5' is not allowed "
        r"\(allowed: 2\.3, 2\.4\)",
    ):
        _spec_of('[exporter.x]\ndestination = "drop"\ndovecot_compat = "2.5"\n')


def test_export_refuses_an_unknown_dialect(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "--dovecot-compat", "3.0", str(EVENTS_FILE)]) == 2
    assert "--dovecot-compat" in capsys.readouterr().err
