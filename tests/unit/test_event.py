"""The in-process event API and Dovecot's flattening rules."""

from __future__ import annotations

import pytest

from exporter.event import Category, Event, Timestamp, default_hostname

STORAGE = Category("storage")
MAILBOX = Category("mailbox", parent=STORAGE)


def test_create_stamps_time_hostname_and_category_ancestors() -> None:
    event = Event.create("mail_opened", categories=[MAILBOX, "imap"], start_ns=5)
    assert event.start_ns == 5
    assert event.hostname == default_hostname()
    assert event.categories == ["storage", "mailbox", "imap"]
    assert event.log_type == "debug"


def test_builder_methods_chain_and_type_check() -> None:
    event = Event.create("e").add_str("s", "v").add_int("i", 3).add_timestamp("t", 7)
    assert event.fields == {"s": "v", "i": 3, "t": Timestamp(7)}
    with pytest.raises(TypeError, match="add_int needs int"):
        event.add_int("b", True)
    with pytest.raises(ValueError, match="64 bits"):
        event.add_int("big", 2**64)
    assert event.add_int("u64", 2**64 - 1).fields["u64"] == 2**64 - 1
    with pytest.raises(TypeError, match="allowed: str, int, Timestamp, list of str"):
        event.set("f", 1.5)  # type: ignore[arg-type]


def test_strlist_append_skips_elements_already_there() -> None:
    event = Event.create("e").add_strlist("r", "a", "b").add_strlist("r", "b", "c", "a")
    assert event.fields["r"] == ["a", "b", "c"]


def test_flatten_parent_first_replace_in_place_and_strlists_merge() -> None:
    root = Event.create(None, categories=["service:imap"], start_ns=0)
    root.add_str("user", "u").add_int("duration", 1).add_strlist("r", "p1", "shared")
    session = Event.create(None, parent=root, categories=["imap"], start_ns=0)
    session.add_str("session", "S")
    cmd = Event.create("imap_command_finished", parent=session, categories=["imap"], start_ns=1_000)
    cmd.add_str("cmd_name", "FETCH").add_str("user", "v").add_strlist("r", "shared", "c1")

    flat = cmd.flatten()
    assert flat.parent is None
    assert flat.name == "imap_command_finished"
    assert flat.categories == ["service:imap", "imap"]
    assert list(flat.fields.items()) == [
        ("user", "v"),  # replaced by the child, at the parent's position
        ("duration", 1),
        ("r", ["p1", "shared", "c1"]),
        ("session", "S"),
        ("cmd_name", "FETCH"),
    ]


def test_sending_sets_end_time_and_duration_at_first_ancestor_position() -> None:
    root = Event.create(None, start_ns=0).add_int("duration", 99).add_str("a", "x")
    cmd = Event.create("c", parent=root, start_ns=1_000_000).add_str("b", "y")
    flat = cmd.flatten(sent_ns=1_656_000)
    assert flat.end_ns == 1_656_000
    assert list(flat.fields.items()) == [("duration", 656), ("a", "x"), ("b", "y")]


def test_flatten_of_a_flat_event_is_itself() -> None:
    event = Event("x", fields={"a": 1})
    assert event.flatten() is event


def test_duration_is_synthesized_from_times_when_missing() -> None:
    assert Event(start_ns=1_000, end_ns=3_001_000).duration_us() == 3_000
    assert Event(fields={"duration": 5}, start_ns=0, end_ns=9_000).duration_us() == 5
    assert Event().duration_us() is None
