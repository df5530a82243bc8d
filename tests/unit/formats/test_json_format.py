"""Dovecot 2.3 json rules: member order, include set, field selection, escaping, truncation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exporter.event import Event, Timestamp
from exporter.formats import FormatSpec, make_formatter
from exporter.formats.text import from_bytes
from tests.support.dovecot_reference import dovecot_json_string

START = 1_795_304_520_099_772_000
END = 1_795_304_520_100_988_000


def _event() -> Event:
    return Event(
        "imap_command_finished",
        hostname="vm",
        start_ns=START,
        end_ns=END,
        categories=["service:imap", "imap"],
        fields={
            "user": "testuser",
            "duration": 656,
            "last_run_time": Timestamp(1_795_304_520_099_700_000),
            "reason_code": ["imap:cmd_fetch", "imap:fetch_header"],
            "bytes_in": -3,
        },
    )


def _fmt(event: Event, **spec: object) -> bytes:
    """Dovecot 2.3's bytes (tests/unit/formats/test_dovecot24.py has 2.4's)."""
    spec.setdefault("dovecot_compat", "2.3")
    return make_formatter(FormatSpec(**spec))(event)  # type: ignore[arg-type]


def _field_json(value: str, **spec: object) -> bytes:
    return _fmt(Event(fields={"k": value}), include=frozenset({"fields"}), **spec)


def test_all_members_in_fixed_order_rfc3339() -> None:
    assert _fmt(_event()) == (
        b'{"event":"imap_command_finished","hostname":"vm",'
        b'"start_time":"2026-11-21T23:42:00.099772Z","end_time":"2026-11-21T23:42:00.100988Z",'
        b'"categories":["service:imap","imap"],"fields":{"user":"testuser","duration":656,'
        b'"last_run_time":"2026-11-21T23:42:00.099700Z",'
        b'"reason_code":["imap:cmd_fetch","imap:fetch_header"],"bytes_in":-3}}'
    )


def test_unix_times_are_bare_numbers_with_six_digits() -> None:
    out = _fmt(_event(), time_format="unix", include=frozenset({"timestamps", "fields"}))
    assert out.startswith(b'{"start_time":1795304520.099772,"end_time":1795304520.100988,')
    assert b'"last_run_time":1795304520.099700,' in out


def test_include_order_does_not_matter_and_empty_set_is_braces() -> None:
    a = _fmt(_event(), include=frozenset({"fields", "name"}))
    assert a.startswith(b'{"event":"imap_command_finished","fields":{')
    assert _fmt(_event(), include=frozenset()) == b"{}"


def test_no_categories_and_no_selected_fields() -> None:
    event = Event("auth_request_finished", fields={"user": "x"})
    out = _fmt(event, include=frozenset({"name", "categories", "fields"}), fields=("nope",))
    assert out == b'{"event":"auth_request_finished","categories":[],"fields":{}}'


def test_field_list_order_missing_skipped_duplicate_written_once() -> None:
    out = _fmt(
        _event(), include=frozenset({"fields"}), fields=("bytes_in", "nope", "user", "bytes_in")
    )
    assert out == b'{"fields":{"bytes_in":-3,"user":"testuser"}}'


def test_unnamed_event_omits_event_member() -> None:
    assert _fmt(Event(hostname="vm"), include=frozenset({"name", "hostname"})) == (
        b'{"hostname":"vm"}'
    )


def test_empty_strlist_is_empty_array() -> None:
    assert _fmt(Event(fields={"r": []}), include=frozenset({"fields"})) == b'{"fields":{"r":[]}}'


def test_escaping_examples_from_dovecot() -> None:
    assert _field_json('a"b\\c/\x7f\x08\x0c\n\r\t\x01\x1b') == (
        b'{"fields":{"k":"a\\"b\\\\c/\x7f\\b\\f\\n\\r\\t\\u0001\\u001b"}}'
    )
    assert _field_json("\u2028\u2029 \u2014") == (b'{"fields":{"k":"\\u2028\\u2029 \xe2\x80\x94"}}')


def test_invalid_utf8_replaced_per_byte() -> None:
    fffd = b"\xef\xbf\xbd"
    cases = {
        b"\xff\xfe": fffd * 2,
        b"\xc0\xaf": fffd * 2,
        b"\xed\xa0\x80": fffd * 3,
        b"\xf4\x90\x80\x80": fffd * 4,
        b"ab\xc3": b"ab" + fffd,
        b"\xe2\x82a": fffd * 2 + b"a",
    }
    for raw, replaced in cases.items():
        assert _field_json(from_bytes(raw)) == b'{"fields":{"k":"' + replaced + b'"}}', raw


def test_invalid_utf8_in_keys_names_categories_too() -> None:
    event = Event(from_bytes(b"n\xff"), categories=[from_bytes(b"c\xff")], fields={"\udcff": 1})
    assert _fmt(event, include=frozenset({"name", "categories", "fields"})) == (
        b'{"event":"n\xef\xbf\xbd","categories":["c\xef\xbf\xbd"],"fields":{"\xef\xbf\xbd":1}}'
    )


@given(st.binary(max_size=40))
def test_any_bytes_escape_exactly_like_dovecot(raw: bytes) -> None:
    assert _field_json(from_bytes(raw)) == b'{"fields":{"k":' + dovecot_json_string(raw) + b"}}"


def test_truncation_rule_of_the_log_driver() -> None:
    kept = "a" * 1000
    assert _field_json(kept, truncate=1000) == b'{"fields":{"k":"' + kept.encode() + b'"}}'
    assert _field_json("a" * 1001, truncate=1000) == (b'{"fields":{"k":"' + b"a" * 1000 + b'..."}}')
    # the byte cut splits the two-byte u-umlaut: its lead byte becomes U+FFFD
    assert _field_json("a" * 999 + "\u00fc", truncate=1000) == (
        b'{"fields":{"k":"' + b"a" * 999 + b'\xef\xbf\xbd..."}}'
    )


def test_truncation_applies_to_strlist_elements_not_ints() -> None:
    event = Event(fields={"r": ["x" * 5, "y" * 3], "n": 123456})
    out = _fmt(event, include=frozenset({"fields"}), truncate=4)
    assert out == b'{"fields":{"r":["xxxx...","yyy"],"n":123456}}'


def test_newline_option_appends_one_newline() -> None:
    assert make_formatter(FormatSpec(include=frozenset()), newline=True)(Event()) == b"{}\n"


def test_a_value_no_format_knows_is_our_error() -> None:
    """Events built with ``Event(...)`` directly are trusted; still, what no format can
    write fails with our error, not a foreign one."""
    from exporter.errors import EventFormatError

    json_fmt = make_formatter(FormatSpec())
    tab_fmt = make_formatter(FormatSpec(format="tab-text"))
    with pytest.raises(EventFormatError, match="cannot write event as json"):
        json_fmt(Event("e", fields={"x": object()}))  # type: ignore[dict-item]
    for bad in (1.5, {"a": 1}, None, object()):
        with pytest.raises(EventFormatError, match="cannot write a .* field value"):
            tab_fmt(Event("e", fields={"x": bad}))  # type: ignore[dict-item]


def test_keys_equal_after_replacing_invalid_bytes_stay_two_members() -> None:
    event = Event(fields={from_bytes(b"\xff"): 1, from_bytes(b"\xfe"): 2})
    assert _fmt(event, include=frozenset({"fields"})) == (
        b'{"fields":{"\xef\xbf\xbd":1,"\xef\xbf\xbd":2}}'
    )


def test_timestamps_out_of_range_are_our_error() -> None:
    from exporter.errors import EventFormatError

    for name in ("json", "tab-text"):
        fmt = make_formatter(FormatSpec(format=name))
        with pytest.raises(EventFormatError, match="out of range"):
            fmt(Event("e", "h", 10**30, 0, [], {}))


def test_first_end_time_of_minus_one_nanosecond() -> None:
    """remember_last has no value that counts as 'nothing yet' by accident."""
    assert _fmt(Event(end_ns=-1), include=frozenset({"timestamps"})) == (
        b'{"end_time":"1969-12-31T23:59:59.999999Z"}'
    )
