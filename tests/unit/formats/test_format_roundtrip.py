"""Every event survives writing and reading back, in both formats."""

from __future__ import annotations

import pytest
from hypothesis import given

from exporter.event import Event
from exporter.formats import FormatSpec, make_formatter
from exporter.formats.reader import read_event
from exporter.formats.text import scrub_surrogates
from tests.support.strategies import any_bytes_text, events, unicode_text

DIALECTS = pytest.mark.parametrize("compat", ["2.3", "2.4"])


@DIALECTS
@pytest.mark.parametrize("time_format", ["rfc3339", "unix"])
@given(event=events(unicode_text, with_times=True))
def test_json_round_trips_events(compat: str, time_format: str, event: Event) -> None:
    """json keeps every type, in both Dovecot dialects: the event read back equals the
    event written."""
    fmt = make_formatter(FormatSpec(time_format=time_format, dovecot_compat=compat))  # type: ignore[arg-type]
    data = fmt(event)
    assert read_event(data) == event


@given(event=events(unicode_text, granularity_ns=1))
def test_json_rfc3339_ns_keeps_nanosecond_start_and_end(event: Event) -> None:
    fmt = make_formatter(FormatSpec(time_precision="ns", include=frozenset({"timestamps"})))
    back = read_event(fmt(event))
    assert (back.start_ns, back.end_ns) == (event.start_ns, event.end_ns)


@DIALECTS
@pytest.mark.parametrize("time_format", ["rfc3339", "unix"])
@given(event=events(any_bytes_text, granularity_ns=1))
def test_bytes_round_trip_in_both_formats(compat: str, time_format: str, event: Event) -> None:
    """Whatever an event holds (invalid UTF-8 included), reading our output and writing it
    again with the same settings gives the same bytes.

    Except in one case no reader can undo: keys that differ only in invalid bytes are
    written as equal keys in json (as Dovecot does), and a JSON object keeps one of them.
    """
    json_keys = {scrub_surrogates(key) for key in event.fields}
    for name in ("json", "tab-text") if len(json_keys) == len(event.fields) else ("tab-text",):
        for precision in ("us", "ns"):
            fmt = make_formatter(
                FormatSpec(
                    format=name,
                    time_format=time_format,  # type: ignore[arg-type]
                    time_precision=precision,
                    dovecot_compat=compat,  # type: ignore[arg-type]
                )
            )
            data = fmt(event)
            assert b"\n" not in data
            if data:  # an event with nothing to write is an empty line, which reads as none
                assert fmt(read_event(data)) == data


@pytest.mark.parametrize("time_format", ["rfc3339", "unix"])
@given(event=events(any_bytes_text, plain_values=True, with_times=True))
def test_tabtext_round_trips_events_whose_types_it_can_tell(time_format: str, event: Event) -> None:
    """tab-text has no types; where the text shows the type (timestamps at Dovecot's six
    digits), the event comes back equal."""
    fmt = make_formatter(FormatSpec(format="tab-text", time_format=time_format))  # type: ignore[arg-type]
    data = fmt(event)
    if not data:
        return  # nothing to write: an empty line, which reads as no event
    assert read_event(data) == event
