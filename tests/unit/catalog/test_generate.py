"""The synthetic event generator: reproducible, catalog-driven, and writable in both formats."""

from __future__ import annotations

import ipaddress
import re
import time
from pathlib import Path

import pytest

from exporter.catalog.generate import HOSTNAME, generate
from exporter.catalog.model import load_catalog
from exporter.cli import main
from exporter.event import Event, FieldValue
from exporter.formats import FormatSpec, make_formatter
from exporter.formats.reader import read_event

N = 2_000


def _as_tabtext_reads(event: Event) -> Event:
    """``event`` as tab-text can give it back: tab-text has no types, and a one-element
    string list is written exactly like a string (see exporter.formats.reader)."""
    fields: dict[str, FieldValue] = {
        key: value[0] if type(value) is list and len(value) == 1 else value
        for key, value in event.fields.items()
    }
    return Event(event.name, event.hostname, event.start_ns, event.end_ns, event.categories, fields)


def test_same_seed_same_events() -> None:
    assert list(generate(count=500, seed=3)) == list(generate(count=500, seed=3))
    assert list(generate(source="stalwart", count=200, seed=3)) == list(
        generate(source="stalwart", count=200, seed=3)
    )


def test_different_seed_different_events() -> None:
    assert list(generate(count=50, seed=1)) != list(generate(count=50, seed=2))


def test_count_is_exact_and_zero_is_allowed() -> None:
    assert len(list(generate(count=123))) == 123
    assert list(generate(count=0)) == []


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="count"):
        list(generate(count=-1))
    with pytest.raises(ValueError, match="no dovecot event"):
        generate(events="no_such_event_*", count=1)


def test_pattern_restricts_names() -> None:
    names = {event.name for event in generate(events="imap_*", count=N)}
    catalog_names = {event.name for event in load_catalog().find("imap_*", "dovecot")}
    assert names <= catalog_names
    assert len(names) > 1  # drawn from all of them, not just one
    assert {event.name for event in generate(events="imap_command_finished", count=20)} == {
        "imap_command_finished"
    }


def test_dovecot_events_look_real() -> None:
    generated = list(generate(events="imap_command_finished", count=N, seed=5))
    previous = 0
    for event in generated:
        assert event.hostname == HOSTNAME
        assert event.categories == ["imap"]
        assert event.start_ns is not None
        assert event.end_ns is not None
        assert event.start_ns >= previous
        previous = event.start_ns
        assert event.end_ns >= event.start_ns
        assert event.start_ns % 1_000 == 0  # whole microseconds, as Dovecot writes
        fields = event.fields
        assert type(fields["duration"]) is int
        assert event.end_ns - event.start_ns == fields["duration"] * 1_000
        assert re.fullmatch(r"user[0-9]{4}@example\.org", str(fields["user"]))
        assert _documentation_ip(str(fields["remote_ip"]))
        assert _documentation_ip(str(fields["local_ip"]))
        assert type(fields["remote_port"]) is int
        assert 0 < fields["remote_port"] < 65536
        assert type(fields["net_in_bytes"]) is int
        assert re.fullmatch(r"[A-Za-z][A-Za-z0-9+/]{15}", str(fields["session"]))
        assert str(fields["cmd_name"]).isupper()
    # Optional fields appear on some events only.
    with_reason = [event for event in generated if "reason_code" in event.fields]
    assert 0 < len(with_reason) < len(generated)
    for event in with_reason:
        reason = event.fields["reason_code"]
        assert type(reason) is list
        assert reason
        assert all(":" in code for code in reason)


def _documentation_ip(text: str) -> bool:
    address = ipaddress.ip_address(text)
    if address.version == 4:
        return address in ipaddress.ip_network("192.0.2.0/24")
    return address in ipaddress.ip_network("2001:db8::/32")


def test_errors_are_sometimes_present() -> None:
    generated = list(generate(events="auth_request_finished", count=N, seed=9))
    with_error = [event for event in generated if "error" in event.fields]
    assert 0 < len(with_error) < len(generated) // 4


@pytest.mark.parametrize("time_format", ["rfc3339", "unix"])
def test_dovecot_events_round_trip_json(time_format: str) -> None:
    fmt = make_formatter(FormatSpec(time_format=time_format), newline=True)  # type: ignore[arg-type]
    for event in generate(count=N, seed=11):
        line = fmt(event)
        assert line.endswith(b"\n")
        assert read_event(line[:-1]) == event


@pytest.mark.parametrize("time_format", ["rfc3339", "unix"])
def test_dovecot_events_round_trip_tabtext(time_format: str) -> None:
    """Equal but for one-element string lists, which tab-text cannot tell from strings;
    and writing what was read gives the same bytes."""
    spec = FormatSpec(format="tab-text", time_format=time_format)  # type: ignore[arg-type]
    fmt = make_formatter(spec, newline=True)
    for event in generate(count=N, seed=11):
        line = fmt(event)
        back = read_event(line[:-1])
        assert back == _as_tabtext_reads(event)
        assert fmt(back) == line


def test_every_dovecot_event_is_generated_and_round_trips() -> None:
    """Each catalog event, not just the common ones, writes and reads back in json."""
    fmt = make_formatter(FormatSpec(), newline=True)
    for catalog_event in load_catalog().find(None, "dovecot"):
        for event in generate(events=catalog_event.name, count=5, seed=1):
            assert event.name == catalog_event.name
            assert read_event(fmt(event)[:-1]) == event


def test_stalwart_events() -> None:
    catalog = load_catalog()
    generated = list(generate(source="stalwart", events="auth.*", count=200, seed=4))
    ids = {event.name for event in catalog.find("auth.*", "stalwart")}
    fmt = make_formatter(FormatSpec(), newline=True)
    for event in generated:
        assert event.name in ids
        assert event.categories == ["auth"]
        assert event.start_ns == event.end_ns
        assert event.fields
        assert set(event.fields) <= set(catalog.stalwart_key_types)
        assert type(event.fields["remotePort"]) is int
        assert read_event(fmt(event)[:-1]) == event
    everything = {event.categories[0] for event in generate(source="stalwart", count=N)}
    assert len(everything) > 10


def test_the_generate_command_writes_events_export_reads(
    tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    assert main(["generate", "--count", "500", "--seed", "3", "--events", "imap_*"]) == 0
    written = capsysbinary.readouterr().out
    assert written.count(b"\n") == 500
    source = tmp_path / "generated.ndjson"
    source.write_bytes(written)
    assert main(["export", "--output", str(tmp_path / "out"), str(source)]) == 0
    assert (tmp_path / "out").read_bytes() == written  # Dovecot json in, the same out
    assert main(["generate", "--count", "500", "--seed", "3", "--events", "imap_*"]) == 0
    assert capsysbinary.readouterr().out == written  # the same seed, the same events
    assert main(["generate", "--events", "no_such_event_x"]) == 2


def test_rate_writes_each_event_when_its_time_comes(
    monkeypatch: pytest.MonkeyPatch, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    """A fake clock that moves only when the command sleeps: 10 events at 4 per second
    take 2.5 s of sleep, and each event is out before the wait for the next."""
    clock = [1000.0]
    written_at_sleep: list[int] = []
    out = bytearray()

    def sleep(seconds: float) -> None:
        assert seconds > 0
        out.extend(capsysbinary.readouterr().out)
        written_at_sleep.append(out.count(b"\n"))
        clock[0] += seconds

    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(time, "sleep", sleep)
    assert main(["generate", "--count", "10", "--rate", "4", "--seed", "1"]) == 0
    out.extend(capsysbinary.readouterr().out)
    assert out.count(b"\n") == 10
    assert written_at_sleep == list(range(1, 11))
    assert clock[0] == pytest.approx(1000.0 + 10 / 4)
    assert main(["generate", "--rate", "-1"]) == 2
