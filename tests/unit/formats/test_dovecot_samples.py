"""Real Dovecot 2.3.19.1 output: every sample event in every sample configuration."""

from __future__ import annotations

from collections import Counter

import pytest

from exporter.event import Event
from exporter.formats import FormatSpec, make_formatter
from exporter.formats.reader import read_event
from tests.support.samples import CONFIGS, expected_bodies, sample_events, sample_lines, spec_for


def _identity(body: bytes) -> tuple[object, ...]:
    """What a body tells about which event it is (only what its include set kept)."""
    if not body:
        return ()
    event: Event = read_event(body)
    fields = event.fields
    return (
        event.name,
        event.start_ns,
        event.end_ns,
        fields.get("session"),
        fields.get("cmd_tag"),
        fields.get("duration"),
    )


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_sample_events_reproduce_dovecot_bytes(config: str) -> None:
    """Each body Dovecot wrote for an event we have is exactly the body we write for it.

    Each exporter's file holds its first 36 bodies in its own arrival order, so a body
    may belong to an event outside our 36 (and one of ours may be missing): such a body
    must then be of an event we do not have, never a differing body for one we do.
    """
    fmt = make_formatter(spec_for(config))
    ours = Counter(fmt(event) for event in sample_events())
    theirs = Counter(expected_bodies(config))
    assert sum(theirs.values()) == 36

    only_theirs = theirs - ours
    only_ours = ours - theirs
    assert sum(only_theirs.values()) <= 2, "more than capture-order differences"
    our_ids = {_identity(body) for body in ours}
    their_ids = {_identity(body) for body in theirs}
    for body in only_theirs:
        assert _identity(body) not in our_ids, f"we write this event differently: {body!r}"
    for body in only_ours:
        assert _identity(body) not in their_ids, f"Dovecot wrote this differently: {body!r}"


def test_sample_order_and_values_json_unix_round_trip() -> None:
    """json -> json with the input's own settings gives back the input bytes, line by line."""
    fmt = make_formatter(FormatSpec(format="json", time_format="unix"))
    for line in sample_lines():
        assert fmt(read_event(line)) == line


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_expected_bodies_read_back_and_reproduce(config: str) -> None:
    """Reading Dovecot's json / tab-text and writing it with the same settings is identity."""
    fmt = make_formatter(spec_for(config))
    bodies = [body for body in expected_bodies(config) if body]
    if config == "tabtext_rfc3339_none":
        assert bodies == []  # every body is empty: nothing to read back
    for body in bodies:
        assert fmt(read_event(body)) == body


def test_sample_types_follow_the_json_typing_rules() -> None:
    """Integers are ints, the fractional last_run_time is a timestamp, arrays are strlists."""
    event = next(e for e in sample_events() if "reason_code" in e.fields)
    assert type(event.fields["duration"]) is int
    assert type(event.fields["reason_code"]) is list
    assert type(event.fields["last_run_time"]).__name__ == "Timestamp"
    assert type(event.fields["cmd_name"]) is str
