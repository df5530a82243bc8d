"""Matching semantics (Dovecot 2.4), one rule at a time, each with hits and misses."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.event import Event, FieldValue, Timestamp
from exporter.filter import compile_filter
from exporter.filter.wildcard import compile_wildcard


def event_with(name: str | None = "test_event", **fields: FieldValue) -> Event:
    return Event(name, categories=["imap", "service:imap"], log_type="debug", fields=fields)


def matches(source: str, event: Event) -> bool:
    return compile_filter(source).matches(event)


def check(source: str, hits: list[Event], misses: list[Event]) -> None:
    flt = compile_filter(source)
    assert [flt(event) for event in hits] == [True] * len(hits), source
    assert [flt(event) for event in misses] == [False] * len(misses), source


# -- event= ---------------------------------------------------------------------------

IMAP = event_with("imap_command_finished")
UNNAMED = event_with(None)


@pytest.mark.parametrize(
    ("source", "hits", "misses"),
    [
        # a literal compares exactly and case-sensitively
        ("event=imap_command_finished", [IMAP], [event_with("IMAP_COMMAND_FINISHED")]),
        ("event=IMAP_COMMAND_FINISHED", [], [IMAP]),
        ("event=imap", [], [IMAP]),
        # a wildcard is case-sensitive too; * any run, ? exactly one character
        ("event=imap_*", [IMAP, event_with("imap_")], [event_with("IMAP_X"), event_with("imap")]),
        ("event=*_finished", [IMAP], [event_with("imap_command_started")]),
        ("event=imap_command_finishe?", [IMAP], [event_with("imap_command_finishe")]),
        ("event=?", [event_with("é")], [event_with(""), event_with("ab")]),
        # escaped wildcard characters are literal
        ('event="a\\*b"', [event_with("a*b")], [event_with("axb")]),
        ('event="a\\*b*"', [event_with("a*bc")], [event_with("axbc")]),
        ('event="a\\?*"', [event_with("a?z")], [event_with("abz")]),
        ('event="a\\\\b"', [event_with("a\\b")], [event_with("ab")]),
        # a backslash before another character: dropped in a literal, kept in a wildcard
        ('event="a\\b"', [event_with("ab")], [event_with("a\\b")]),
        ('event="a\\b*"', [event_with("a\\bc")], [event_with("abc")]),
        # an event needs a name
        ("event=*", [IMAP, event_with("")], [UNNAMED]),
    ],
)
def test_event_name(source: str, hits: list[Event], misses: list[Event]) -> None:
    check(source, hits, misses)


def test_event_name_literal_is_a_single_compare() -> None:
    """The compiled literal test reads nothing but ``event.name`` (here via a stub)."""

    class NameOnly:
        name = "imap_command_finished"

    matcher = compile_filter("event=imap_command_finished").matches
    assert matcher(NameOnly())  # type: ignore[arg-type]


# -- category= ------------------------------------------------------------------------


def categorized(*categories: str, log_type: str = "debug") -> Event:
    return Event("e", categories=list(categories), log_type=log_type)


@pytest.mark.parametrize(
    ("source", "hits", "misses"),
    [
        # log types test the level the event was sent with
        ("category=debug", [categorized()], [categorized("debug", log_type="info")]),
        ("category=info", [categorized(log_type="info")], [categorized("info")]),
        ("category=error", [categorized(log_type="error")], [categorized()]),
        # a log type must be written in lower case; otherwise it is a category name
        ("category=DEBUG", [categorized("DEBUG")], [categorized(log_type="DEBUG")]),
        # an escape hides a log type, and is removed from the category name
        ('category="de\\bug"', [categorized("debug", log_type="info")], [categorized()]),
        # categories: exact, case-sensitive, no wildcards; ancestors are already listed
        ("category=imap", [categorized("imap", "service:imap")], [categorized("IMAP")]),
        ("category=service:imap", [categorized("service:imap")], [categorized("imap")]),
        ("category=imap*", [categorized("imap*")], [categorized("imap")]),
        ("category=nosuch", [], [categorized("imap")]),
    ],
)
def test_category(source: str, hits: list[Event], misses: list[Event]) -> None:
    check(source, hits, misses)


# -- source_location= -----------------------------------------------------------------


def located(source_file: str | None, line: int = 0) -> Event:
    return Event("e", source_file=source_file, source_line=line)


@pytest.mark.parametrize(
    ("source", "hits", "misses"),
    [
        # without ':' only the file counts
        ("source_location=cmd.c", [located("cmd.c", 12)], [located("CMD.c", 12), located(None)]),
        # with ':' the value must equal "file:line" exactly (2.4)
        ("source_location=cmd.c:12", [located("cmd.c", 12)], [located("cmd.c", 13)]),
        ("source_location=cmd.c:0", [located("cmd.c", 0)], [located("cmd.c", 12)]),
        ("source_location=cmd.c:x", [], [located("cmd.c", 12)]),
        ('source_location="c\\:\\\\dir:3"', [located("c:\\dir", 3)], [located("c:\\dir", 4)]),
        ("source_location=cmd.c:12", [], [located(None, 12)]),
    ],
)
def test_source_location(source: str, hits: list[Event], misses: list[Event]) -> None:
    check(source, hits, misses)


# -- missing fields and duration ------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ('nope=""', True),
        ('nope>""', True),  # 2.4 does not look at the operator for a missing field
        ("nope=x", False),
        ("nope=*", False),
        ("nope=0", False),
        ("nope=127.0.0.1", False),
    ],
)
def test_missing_field_matches_only_empty_string(source: str, expected: bool) -> None:
    assert matches(source, event_with(present="x")) is expected


def test_duration_comes_from_the_field_else_the_event_times() -> None:
    timed = Event("e", start_ns=1_000_000_000, end_ns=1_002_500_000)  # 2500 us
    check("duration=2500", [timed, event_with(duration=2500)], [event_with(duration=2499)])
    check("duration>=2ms", [timed], [Event("e", start_ns=0, end_ns=1_999_000)])
    check("duration<3ms", [timed], [event_with(duration=3000)])
    # a duration field wins over the times
    check("duration=7", [Event("e", start_ns=0, end_ns=10**9, fields={"duration": 7})], [])
    # no field and no times: the field is missing
    check('duration=""', [Event("e")], [timed])
    check("duration>=0", [timed], [Event("e")])


# -- str fields -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "hits", "misses"),
    [
        # literals: ASCII-case-insensitive
        ("cmd_name=select", ["SELECT", "select", "SeLeCt"], ["SELECTED", "SELEC", ""]),
        ('tagged_reply="OK done"', ["ok DONE"], ["OK  done"]),
        # wildcards: ASCII-case-insensitive too
        ("cmd_name=s?LE*", ["SELECT", "sElEcTeD"], ["SLECT", "EXAMINE"]),
        ('tagged_reply="NO *"', ["NO Mailbox doesn't exist", "no ", "NO *"], ["NOOP", "OK"]),
        ('x="\\**"', ["*star"], ["star"]),
        # only ASCII letters fold, as Dovecot's i_toupper/strcasecmp
        ('x="É"', ["É"], ["é"]),
        ('x="straße"', ["STRAßE"], ["STRASSE"]),
        ("x=k", ["K"], ["\u212a"]),  # KELVIN SIGN lower-cases to 'k' in Unicode
        ('x="\u212a"', ["\u212a"], ["k", "K"]),
        ('x="é*"', ["éa"], ["Éa"]),
        # an empty field matches only "", and "" matches only an empty field
        ('x=""', [""], ["a", " "]),
        ("x=*", ["a"], [""]),
        # numbers compare with their decimal text (2.4 types the value first)
        ("x=7", ["7"], ["07", "7.0"]),
        ("x=007", ["7"], ["007"]),
        ("x=1k", ["1024"], ["1k"]),
        ("x=-1", ["-1"], ["1"]),
        # a numeric wildcard is a wildcard on str fields
        ("x=1*", ["1abc", "1"], ["abc1"]),
        # an ambiguous unit is a plain string
        ("x=5m", ["5M", "5m"], ["300000000", "5242880"]),
    ],
)
def test_str_field(source: str, hits: list[str], misses: list[str]) -> None:
    check(source, [event_with(x=v, cmd_name=v, tagged_reply=v) for v in hits], [])
    check(source, [], [event_with(x=v, cmd_name=v, tagged_reply=v) for v in misses])


@pytest.mark.parametrize("op", [">", "<", ">=", "<="])
@pytest.mark.parametrize("value", ["OK", "a*", "1", "127.0.0.1", '""'])
def test_str_field_inequalities_never_match(op: str, value: str) -> None:
    assert not matches(f"x{op}{value}", event_with(x="OK"))
    assert not matches(f"x{op}{value}", event_with(x="1"))
    assert not matches(f"x{op}{value}", event_with(x="127.0.0.1"))
    assert matches(f"x{op}{value}", event_with()) is (value == '""')  # missing field


# -- int fields -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "hits", "misses"),
    [
        ("bytes_in=10", [10], [11, -10]),
        ("bytes_in>10", [11], [10, 9]),
        ("bytes_in<10", [9, -1], [10]),
        ("bytes_in>=10", [10, 11], [9]),
        ("bytes_in<=10", [10, -5], [11]),
        ("bytes_in > = 10", [10], [9]),
        ("bytes_in>-1", [0], [-1]),
        ("bytes_in=-9223372036854775808", [-(2**63)], [0]),
        # sizes and intervals are numbers
        ("bytes_in=1k", [1024], [1000, 1]),
        ("bytes_in>=1MB", [2**20], [2**20 - 1]),
        ("running_usecs<1s", [999_999], [1_000_000]),
        ("running_usecs=1mins", [60_000_000], [60]),
        # numeric wildcards match the decimal text, with '=' only
        ("bytes_in=1*", [1, 10, 11, 1016], [0, 21, -1]),
        ("bytes_in=*", [0, -5, 2**63 - 1], []),
        ("bytes_in=?", [0, 9], [10, -1]),
        ("bytes_in>1*", [], [10, 100]),
        # nothing else ever matches an int field (2.4: no string compare)
        ("bytes_in=abc", [], [0]),
        ("bytes_in=1*a", [], [1]),
        ('bytes_in=""', [], [0]),
        ("bytes_in>=abc", [], [0, 10]),
        ("bytes_in=5m", [], [5, 5 * 2**20, 5 * 60_000_000]),
        ("bytes_in=127.0.0.1", [], [2130706433]),
        ('bytes_in="1\\*"', [], [1]),
    ],
)
def test_int_field(source: str, hits: list[int], misses: list[int]) -> None:
    check(
        source,
        [event_with(bytes_in=v, running_usecs=v) for v in hits],
        [event_with(bytes_in=v, running_usecs=v) for v in misses],
    )


# -- timeval fields -------------------------------------------------------------------


@pytest.mark.parametrize(
    "source", ["last_run_time=*", 'last_run_time=""', "last_run_time>0", "last_run_time=1"]
)
def test_timeval_field_never_matches(source: str) -> None:
    assert not matches(source, event_with(last_run_time=Timestamp(1)))
    assert matches(f"NOT {source}", event_with(last_run_time=Timestamp(1)))


# -- strlist fields -------------------------------------------------------------------

FETCH = event_with(reason_code=["imap:cmd_fetch", "imap:fetch_body"])
SELECT = event_with(reason_code=["imap:cmd_select"])
EMPTY_LIST = event_with(reason_code=[])


@pytest.mark.parametrize(
    ("source", "hits", "misses"),
    [
        # any element matches; literals are case-insensitive in 2.4 (2.3: case-sensitive)
        ("reason_code=imap:cmd_fetch", [FETCH], [SELECT, EMPTY_LIST]),
        ("reason_code=IMAP:CMD_FETCH", [FETCH], [SELECT]),
        ("reason_code=imap:fetch_body", [FETCH], [SELECT]),
        ("reason_code=imap:cmd", [], [FETCH, SELECT]),
        # wildcards are case-insensitive
        ("reason_code=IMAP:CMD_F*", [FETCH], [SELECT, EMPTY_LIST]),
        ("reason_code=*select", [SELECT], [FETCH]),
        # "" matches an empty list only
        ('reason_code=""', [EMPTY_LIST], [FETCH]),
        # only '='
        ("reason_code>a", [], [FETCH, SELECT]),
        ('reason_code<=""', [], [EMPTY_LIST]),
        # numbers compare with their decimal text, IPs with their canonical text
        ("codes=5", [event_with(codes=["x", "5"])], [event_with(codes=["05"])]),
        ("ips=::1", [event_with(ips=["0:0::1", "::1"])], [event_with(ips=["0::1"])]),
        ("ips=2001:DB8::1", [event_with(ips=["2001:db8::1"])], [event_with(ips=["2001:db8::"])]),
        ("ips=::FFFF:1.2.3.4", [event_with(ips=["::ffff:1.2.3.4"])], [event_with(ips=["1.2.3.4"])]),
    ],
)
def test_strlist_field(source: str, hits: list[Event], misses: list[Event]) -> None:
    check(source, hits, misses)


# -- IP values --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "hits", "misses"),
    [
        ("remote_ip=127.0.0.0/8", ["127.4.3.2", "127.0.0.1"], ["128.0.0.1", "::1", "localhost"]),
        ("remote_ip=127.0.0.1", ["127.0.0.1", "::ffff:127.0.0.1"], ["127.0.0.2", ""]),
        ("remote_ip=2001::1", ["2001:0:0:0:0:0:0:1", "2001::1"], ["2001::2", "1.2.3.4"]),
        ("remote_ip=2001:db8::/32", ["2001:db8:1::5", "2001:DB8::"], ["2001:db9::"]),
        ("remote_ip=0.0.0.0/0", ["8.8.8.8"], ["::8"]),
        ("remote_ip=::/0", ["::8"], ["8.8.8.8"]),
        # a scope on the value must match; none matches any
        ('remote_ip="fe80::1%eth0"', ["fe80::1%eth0"], ["fe80::1%eth1", "fe80::1"]),
        ("remote_ip=fe80::/64", ["fe80::1%eth0", "fe80::2"], ["fe81::1"]),
        # a str field that is no address compares with the value's canonical text
        ("remote_ip=10.0.0.0/8", ["10.0.0.0/8", "10.1.2.3"], ["10.0.0.0/08", "10.0.0.0/16"]),
    ],
)
def test_ip_value_on_str_field(source: str, hits: list[str], misses: list[str]) -> None:
    check(source, [event_with(remote_ip=v) for v in hits], [])
    check(source, [], [event_with(remote_ip=v) for v in misses])


@pytest.mark.parametrize("op", [">", "<", ">=", "<="])
def test_ip_inequalities_never_match(op: str) -> None:
    assert not matches(f"remote_ip{op}127.0.0.0/8", event_with(remote_ip="127.0.0.1"))


# -- logic ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("a=1 AND b=2", True),
        ("a=1 AND b=3", False),
        ("a=1 AND b=2 AND c=3", True),
        ("a=1 AND b=2 AND c=4", False),
        ("a=0 OR b=2", True),
        ("a=0 OR b=0", False),
        ("a=0 OR b=0 OR c=3", True),
        ("a=0 OR b=0 OR c=0", False),
        ("NOT a=0", True),
        ("NOT a=1", False),
        ("NOT NOT a=1", True),
        # equal precedence, left to right: (a=0 OR b=2) AND c=0
        ("a=0 OR b=2 AND c=0", False),
        ("a=0 OR (b=2 AND c=3)", True),
        # NOT binds tighter: ((NOT a=1) AND a=1) OR b=2
        ("NOT a=1 AND a=1 OR b=2", True),
        ("NOT a=1 AND a=1 OR b=0", False),
    ],
)
def test_logic(source: str, expected: bool) -> None:
    assert matches(source, event_with(a=1, b=2, c=3)) is expected


def test_call_and_matches_agree() -> None:
    flt = compile_filter("a=1")
    assert flt(event_with(a=1)) is flt.matches(event_with(a=1)) is True
    assert flt(event_with(a=2)) is flt.matches(event_with(a=2)) is False


# -- wildcards against a reference matcher ----------------------------------------------


def reference_wildcard(mask: str, value: str, ignore_case: bool) -> bool:
    """Dovecot's escaped wildcard semantics, by dynamic programming over mask items."""
    items: list[str | None] = []  # None is '*', "" is '?', else one literal character
    i = 0
    while i < len(mask):
        if mask[i] == "\\" and mask[i + 1 : i + 2] in ("*", "?", "\\"):
            items.append(mask[i + 1])
            i += 2
            continue
        items.append(None if mask[i] == "*" else "" if mask[i] == "?" else mask[i])
        i += 1

    def fold(char: str) -> str:
        return char.lower() if ignore_case and char.isascii() else char

    reachable = {0}  # value positions reachable after the items so far
    for item in items:
        if item is None:
            reachable = set(range(min(reachable), len(value) + 1)) if reachable else set()
        else:
            reachable = {
                p + 1
                for p in reachable
                if p < len(value) and (item == "" or fold(item) == fold(value[p]))
            }
    return len(value) in reachable


MASKS = st.lists(st.sampled_from(["*", "?", "a", "B", "\\", "\\*", "\\?", "é", "\n"])).map("".join)
VALUES = st.lists(st.sampled_from(["a", "A", "b", "B", "*", "?", "\\", "é", "\n"])).map("".join)


@settings(max_examples=500, deadline=None)
@given(MASKS, VALUES, st.booleans())
def test_wildcard_agrees_with_reference(mask: str, value: str, ignore_case: bool) -> None:
    compiled = compile_wildcard(mask, ignore_case=ignore_case)
    assert (compiled(value) is not None) is reference_wildcard(mask, value, ignore_case)


def test_wildcard_does_not_backtrack_polynomially() -> None:
    """A naive ``.*a.*a.*b`` takes seconds here (cubic backtracking); ours is linear."""
    matcher = compile_wildcard("*a*a*b", ignore_case=True)
    started = time.perf_counter()
    assert matcher("a" * 4_000) is None
    assert time.perf_counter() - started < 1.0
