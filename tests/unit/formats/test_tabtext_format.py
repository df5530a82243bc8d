"""Dovecot tab-text rules: item order, escaping, strlists, the empty-output quirks."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from exporter.event import Event, Timestamp
from exporter.formats import FormatSpec, make_formatter
from exporter.formats.text import from_bytes
from tests.support.dovecot_reference import dovecot_tab_escape

ALL = frozenset({"name", "hostname", "timestamps", "categories", "fields"})


def _fmt(event: Event, include: frozenset[str] = ALL, **spec: object) -> bytes:
    return make_formatter(FormatSpec(format="tab-text", include=include, **spec))(event)  # type: ignore[arg-type]


def _event(categories: list[str] | None = None) -> Event:
    return Event(
        "imap_command_finished",
        hostname="vm",
        start_ns=1_795_304_520_099_772_000,
        end_ns=1_795_304_520_100_988_000,
        categories=["service:imap", "imap"] if categories is None else categories,
        fields={
            "user": "testuser",
            "reason_code": ["imap:cmd_fetch", "imap:fetch_header"],
            "bytes_out": 124,
            "last_run_time": Timestamp(1_795_304_520_099_700_000),
        },
    )


def test_items_in_order_unix() -> None:
    assert _fmt(_event(), time_format="unix") == (
        b"event:imap_command_finished\thostname:vm\tstart_time:1795304520.099772"
        b"\tend_time:1795304520.100988\tcategory:service:imap\tcategory:imap"
        b"\tfield:user=testuser\tfield:reason_code=imap:cmd_fetch\x01timap:fetch_header"
        b"\tfield:bytes_out=124\tfield:last_run_time=1795304520.099700"
    )


def test_rfc3339_times_are_not_quoted() -> None:
    out = _fmt(_event(), include=frozenset({"timestamps"}))
    assert out == b"start_time:2026-11-21T23:42:00.099772Z\tend_time:2026-11-21T23:42:00.100988Z"


def test_observed_escaping_example() -> None:
    value = 'we\tird\nbox "q" back\\slash \u00fc\u20ac'
    out = _fmt(Event(fields={"mailbox": value}), include=frozenset({"fields"}))
    assert out == b'field:mailbox=we\x01tird\x01nbox "q" back\\slash \xc3\xbc\xe2\x82\xac'


def test_escape_table_and_invalid_utf8_kept_raw() -> None:
    raw = b"\x01\t\r\n\x00\x7f\x1b\x08\x0c=:\xff\xc3"
    out = _fmt(Event(fields={"k": from_bytes(raw)}), include=frozenset({"fields"}))
    assert out == b"field:k=\x011\x01t\x01r\x01n\x010\x7f\x1b\x08\x0c=:\xff\xc3"


@given(st.binary(max_size=40))
def test_any_bytes_escape_exactly_like_dovecot(raw: bytes) -> None:
    out = _fmt(Event(fields={"k": from_bytes(raw)}), include=frozenset({"fields"}))
    assert out == b"field:k=" + dovecot_tab_escape(raw)


def test_name_hostname_category_and_key_are_escaped() -> None:
    event = Event("a\tb", hostname="h\n", categories=["c\x01"], fields={"k\r": "v"})
    assert _fmt(event, include=frozenset({"name", "hostname", "categories", "fields"})) == (
        b"event:a\x01tb\thostname:h\x01n\tcategory:c\x011\tfield:k\x01r=v"
    )


def test_strlist_is_escaped_twice() -> None:
    event = Event(fields={"r": ["a\tb", "c", "d\x01"], "e": []})
    assert _fmt(event, include=frozenset({"fields"})) == (
        b"field:r=a\x011tb\x01tc\x01td\x0111\tfield:e="
    )


def test_empty_include_and_nothing_selected_give_empty_body() -> None:
    assert _fmt(_event(), include=frozenset()) == b""
    assert _fmt(_event(), include=frozenset({"fields"}), fields=("missing",)) == b""


def test_zero_categories_leave_an_empty_item() -> None:
    assert _fmt(
        _event([]), include=frozenset({"name", "categories", "fields"}), fields=("user",)
    ) == (b"event:imap_command_finished\t\tfield:user=testuser")
    # categories first: a leading TAB; categories only: an empty body
    assert _fmt(_event([]), include=frozenset({"categories", "fields"}), fields=("user",)) == (
        b"\tfield:user=testuser"
    )
    assert _fmt(_event([]), include=frozenset({"categories"})) == b""


def test_categories_only() -> None:
    assert _fmt(_event(), include=frozenset({"categories"})) == (
        b"category:service:imap\tcategory:imap"
    )


def test_truncation_cuts_str_bytes_then_escapes_and_leaves_strlists() -> None:
    event = Event(fields={"s": "a" * 999 + "\u00fc", "t": "\t" * 3, "r": ["x" * 2000]})
    out = _fmt(event, include=frozenset({"fields"}), truncate=1000)
    assert out.split(b"\t")[0] == b"field:s=" + b"a" * 999 + b"\xc3..."
    assert b"field:t=\x01t\x01t\x01t\t" in out  # not longer than the limit: kept whole
    assert out.endswith(b"field:r=" + b"x" * 2000)
    assert _fmt(Event(fields={"s": "\t\t"}), include=frozenset({"fields"}), truncate=1) == (
        b"field:s=\x01t..."
    )


def test_newline_option() -> None:
    spec = FormatSpec(format="tab-text", include=frozenset({"name"}))
    assert make_formatter(spec, newline=True)(Event("x")) == b"event:x\n"
