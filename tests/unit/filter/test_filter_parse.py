"""Lexer, grammar, errors, value typing and canonical printing of the filter language."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.errors import FilterSyntaxError
from exporter.event import Event, Timestamp
from exporter.filter import (
    MAX_DEPTH,
    And,
    Category,
    EventName,
    Field,
    Node,
    Not,
    Op,
    Or,
    SourceLocation,
    compile_filter,
    parse_filter,
)
from exporter.filter.ip import Address, Network
from exporter.filter.nodes import SPECIAL_KEYS
from exporter.filter.values import Number, Text, TypedValue, Wildcard

TERM = ("a field name", "NOT", "'('")
TERM_OR_END = (*TERM, "end of input")
AFTER_FILTER = ("AND", "OR", "end of input")
AFTER_GROUP = ("AND", "OR", "')'")
OPERATOR = ("'='", "'>'", "'<'")


def f(key: str, value: str, op: Op = Op.EQ) -> Field:
    return Field(key, op, value)


def syntax_error(source: str) -> FilterSyntaxError:
    with pytest.raises(FilterSyntaxError) as caught:
        compile_filter(source)
    return caught.value


# -- errors: every example of spec 8.2, plus our own -------------------------------------


@pytest.mark.parametrize(
    ("source", "position", "problem", "expected"),
    [
        # spec 8.2: "unexpected TOKEN, expecting $end"
        ("event=abc def", 10, "unexpected word 'def'", AFTER_FILTER),
        # spec 8.2: "unexpected '('"
        ("event=(abc)", 6, "unexpected '('", ("a value",)),
        # spec 8.2: "unexpected $end, expecting TOKEN or STRING or NOT or '('"
        ("event=abc AND", 13, "unexpected end of input", TERM),
        # spec 8.2: "unexpected $end, expecting AND or OR or ')'"
        ("(event=abc", 10, "unexpected end of input", AFTER_GROUP),
        # spec 8.2: "unexpected ')', expecting $end"
        ("event=abc)", 9, "unexpected ')'", AFTER_FILTER),
        # spec 8.2: "unexpected $end, expecting '=' or '>' or '<'"
        ("foo", 3, "unexpected end of input", OPERATOR),
        # spec 8.2: "unexpected '=', expecting $end" (at the start, an empty filter is fine)
        ("=abc", 0, "unexpected '='", TERM_OR_END),
        # spec 8.2: "unexpected OR, expecting TOKEN or STRING or NOT or '('"
        ("event=abc AND OR event=def", 14, "unexpected OR", TERM),
        ("event=abc or or event=def", 13, "unexpected OR", TERM),
        # spec 8.2: "unexpected $undefined" (characters outside the 2.4 token set)
        ("event=abc$", 9, "unexpected character '$'", AFTER_FILTER),
        ("cmd_name=sélect", 10, "unexpected character 'é'", AFTER_FILTER),
        ("$", 0, "unexpected character '$'", TERM_OR_END),
        ("event=\x00", 6, "unexpected character '\\x00'", ("a value",)),
        # a bare keyword is not a key
        ("and=1", 0, "unexpected AND", TERM_OR_END),
        ("x=1 AND not=1", 11, "unexpected '='", TERM),
        # operators
        ("x<>1", 2, "unexpected '>'", ("'='", "a value")),
        ("x=>1", 2, "unexpected '>'", ("a value",)),
        ("x>", 2, "unexpected end of input", ("'='", "a value")),
        ("x>=", 3, "unexpected end of input", ("a value",)),
        ("x==1", 2, "unexpected '='", ("a value",)),
        # groups
        ("()", 1, "unexpected ')'", TERM),
        ("(x=1))", 5, "unexpected ')'", AFTER_FILTER),
        ("NOT", 3, "unexpected end of input", TERM),
        ("x=1 y=2", 4, "unexpected word 'y'", AFTER_FILTER),
        ('x=1 "y"=2', 4, 'unexpected string "y"', AFTER_FILTER),
        # unterminated strings point at their opening quote
        ('x="abc', 2, "unterminated string", ("'\"'",)),
        ('x="abc\\"', 2, "unterminated string", ("'\"'",)),
        ('"x', 0, "unterminated string", ("'\"'",)),
        ('x=1 AND "x=1', 8, "unterminated string", ("'\"'",)),
        # errors are reported in source order, as bison pulls tokens lazily
        (") $", 0, "unexpected ')'", TERM_OR_END),
        ("x=1\n  AND )", 10, "unexpected ')'", TERM),
    ],
)
def test_syntax_errors(source: str, position: int, problem: str, expected: tuple[str, ...]) -> None:
    error = syntax_error(source)
    assert (error.position, error.problem, error.expected) == (position, problem, expected)


@pytest.mark.parametrize("key", ["event", "category", "source_location", '"event"'])
@pytest.mark.parametrize("op", [">", "<", ">=", "<=", "> ="])
def test_only_fields_support_inequality(key: str, op: str) -> None:
    source = f"x=1 AND {key}{op}abc"
    error = syntax_error(source)
    assert error.problem == "Only fields support inequality comparisons"
    assert error.position == source.index(op[0])
    assert error.expected == ("'='",)


def test_error_message_renders_line_and_column() -> None:
    error = syntax_error("event=a AND\n  (x=1")
    assert str(error) == (
        "event filter: unexpected end of input at line 2, column 7, expecting AND, OR or ')'"
    )
    assert error.caret() == "    (x=1\n        ^"


def test_nesting_is_capped_with_a_syntax_error() -> None:
    deep_parens = "(" * (MAX_DEPTH + 5) + "x=1" + ")" * (MAX_DEPTH + 5)
    assert "nests" in syntax_error(deep_parens).problem
    assert "nests" in syntax_error("NOT " * (MAX_DEPTH + 5) + "x=1").problem
    # each switch between AND and OR wraps the run so far one level deeper: the 100th
    # switch (the AND of repetition 50) is one too many
    mixed = syntax_error("a=1 AND b=1 OR " * MAX_DEPTH + "c=1")
    assert "nests" in mixed.problem
    assert mixed.position == len("a=1 AND b=1 OR ") * 50 + len("a=1 ")
    # what is allowed stays usable: parsing, printing and matching
    shallow = "(" * (MAX_DEPTH - 1) + "NOT x=1" + ")" * (MAX_DEPTH - 1)
    assert compile_filter(shallow).matches(Event("e"))


def test_long_flat_chains_are_not_nesting() -> None:
    source = " AND ".join(f'k{i}=""' for i in range(5000))
    flt = compile_filter(source)
    assert isinstance(flt.ast, And)
    assert len(flt.ast.operands) == 5000
    assert flt.matches(Event("e"))


# -- lexer ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "tree"),
    [
        ("a=1 and b=2", And((f("a", "1"), f("b", "2")))),
        ("a=1 And b=2 oR c=3", Or((And((f("a", "1"), f("b", "2"))), f("c", "3")))),
        ("nOt a=1", Not(f("a", "1"))),
        # keywords only as whole words
        ("android=1", f("android", "1")),
        ("ORDER=notify", f("ORDER", "notify")),
        ("x=nothing", f("x", "nothing")),
        # whitespace is spaces, tabs, CR and LF, and optional around punctuation
        (" \t\r\n x \n=\t1 ", f("x", "1")),
        ("(x=1)AND(y=2)", And((f("x", "1"), f("y", "2")))),
        # 2.4 token characters, including / and %
        ("x=a:b.c*d?e_f-g/h%i", f("x", "a:b.c*d?e_f-g/h%i")),
        # '>' and '=' are separate tokens: '> =' is '>='
        ("x>=1", f("x", "1", Op.GE)),
        ("x > = 1", f("x", "1", Op.GE)),
        ("x< =1", f("x", "1", Op.LE)),
        ("x>1", f("x", "1", Op.GT)),
        ("x<1", f("x", "1", Op.LT)),
        # quoted keys are unescaped; a quoted "event" is still the event name
        ('"cmd_name"=NOOP', f("cmd_name", "NOOP")),
        ('"my key"=1', f("my key", "1")),
        ('"a\\"b\\\\c"=1', f('a"b\\c', "1")),
        ('"event"=x', EventName("x")),
        ('"AND"=1', f("AND", "1")),
        # a keyword as value is its lower-case word; quoted, it is kept as written
        ("cmd_name=AND", f("cmd_name", "and")),
        ("cmd_name=Or", f("cmd_name", "or")),
        ("cmd_name=NOT", f("cmd_name", "not")),
        ('cmd_name="AND"', f("cmd_name", "AND")),
        ("event=NOT", EventName("not")),
        # string values keep their escapes raw (what they mean depends on the value)
        ('x="a\\*b"', f("x", "a\\*b")),
        ('x="say \\"hi\\""', f("x", 'say \\"hi\\"')),
        ('x="two words"', f("x", "two words")),
        ('x=""', f("x", "")),
        ('x="line\nbreak"', f("x", "line\nbreak")),
        # flex quirk: a backslash before a newline is dropped
        ('x="a\\\nb"', f("x", "a\nb")),
        ('x="a\\\\\nb"', f("x", "a\\\\\nb")),
        # special keys
        ("event=imap_*", EventName("imap_*")),
        ("category=service:imap", Category("service:imap")),
        ("source_location=imap-client.c:123", SourceLocation("imap-client.c:123")),
        ("Event=x", f("Event", "x")),
    ],
)
def test_parse(source: str, tree: Node) -> None:
    assert parse_filter(source) == tree


@pytest.mark.parametrize("source", ["", " ", "\t\r\n  "])
def test_empty_filter_matches_everything(source: str) -> None:
    assert parse_filter(source) is None
    flt = compile_filter(source)
    assert flt.match_all
    assert flt.ast is None
    assert flt.matches(Event())
    assert flt(Event("x"))


def test_non_empty_filter_is_not_match_all() -> None:
    flt = compile_filter("event=x")
    assert not flt.match_all
    assert flt.source == "event=x"
    assert flt.ast == EventName("x")


# -- precedence ----------------------------------------------------------------------

A, B, C = f("a", "1"), f("b", "1"), f("c", "1")


@pytest.mark.parametrize(
    ("source", "tree"),
    [
        # AND and OR have the same precedence and group left to right
        ("a=1 OR b=1 AND c=1", And((Or((A, B)), C))),
        ("a=1 AND b=1 OR c=1", Or((And((A, B)), C))),
        ("a=1 OR b=1 OR c=1", Or((A, B, C))),
        ("a=1 AND b=1 AND c=1", And((A, B, C))),
        ("a=1 OR b=1 AND c=1 OR a=1", Or((And((Or((A, B)), C)), A))),
        # parentheses group
        ("a=1 OR (b=1 AND c=1)", Or((A, And((B, C))))),
        ("(a=1 AND b=1) AND c=1", And((And((A, B)), C))),
        ("((a=1))", A),
        # NOT binds tighter than AND/OR
        ("NOT a=1 AND a=1 OR b=1", Or((And((Not(A), A)), B))),
        ("NOT (a=1 OR b=1)", Not(Or((A, B)))),
        ("NOT NOT a=1", Not(Not(A))),
        ("a=1 AND NOT NOT NOT b=1", And((A, Not(Not(Not(B)))))),
    ],
)
def test_precedence(source: str, tree: Node) -> None:
    assert parse_filter(source) == tree


# -- value typing --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "typed"),
    [
        # integers (int64)
        ("0", Number(0, "integer")),
        ("-5", Number(-5, "integer")),
        ("007", Number(7, "integer")),
        ("9223372036854775807", Number(2**63 - 1, "integer")),
        ("-9223372036854775808", Number(-(2**63), "integer")),
        ("9223372036854775808", Text("9223372036854775808")),
        ("+5", Text("+5")),
        # IP and IP/bits
        ("127.0.0.1", Network(Address(4, 0x7F000001), 32)),
        ("127.0.0.0/8", Network(Address(4, 0x7F000000), 8)),
        ("010.0.0.1", Network(Address(4, 0x0A000001), 32)),
        ("2001::1", Network(Address(6, 0x2001 << 112 | 1), 128)),
        ("[::1]", Network(Address(6, 1), 128)),
        ("fe80::/10", Network(Address(6, 0xFE80 << 112), 10)),
        ("fe80::1%eth0", Network(Address(6, 0xFE80 << 112 | 1, "eth0"), 128)),
        ("127.0.0.0/33", Text("127.0.0.0/33")),
        ("256.0.0.1", Text("256.0.0.1")),
        ("1.2.3", Text("1.2.3")),
        # sizes, powers of 1024
        ("1b", Number(1, "size")),
        ("1k", Number(1024, "size")),
        ("1KB", Number(1024, "size")),
        ("1KiB", Number(1024, "size")),
        ("1kib", Number(1024, "size")),
        ("100kb", Number(102400, "size")),
        ("1MB", Number(2**20, "size")),
        ("1mi", Number(2**20, "size")),
        ("2G", Number(2 * 2**30, "size")),
        ("1TB", Number(2**40, "size")),
        ("3 kB", Number(3072, "size")),
        ("1bb", Text("1bb")),
        ("8388608T", Text("8388608T")),  # 2**63 bytes: more than int64
        # ambiguous M: MB or minutes? kept as a string
        ("1m", Text("1m", ambiguous_unit=True)),
        ("5M", Text("5M", ambiguous_unit=True)),
        ("5 m", Text("5 m", ambiguous_unit=True)),
        # intervals, in microseconds; any prefix of the unit words
        ("1ms", Number(1_000, "interval")),
        ("2msec", Number(2_000, "interval")),
        ("1milliseconds", Number(1_000, "interval")),
        ("1mil", Number(1_000, "interval")),
        ("1s", Number(1_000_000, "interval")),
        ("1sec", Number(1_000_000, "interval")),
        ("1Seconds", Number(1_000_000, "interval")),
        ("1mins", Number(60_000_000, "interval")),
        ("1min", Number(60_000_000, "interval")),
        ("1minutes", Number(60_000_000, "interval")),
        ("1h", Number(3_600_000_000, "interval")),
        ("1hours", Number(3_600_000_000, "interval")),
        ("1d", Number(86_400_000_000, "interval")),
        ("1w", Number(604_800_000_000, "interval")),
        ("7weeks", Number(7 * 604_800_000_000, "interval")),
        ("8w", Text("8w")),  # more milliseconds than Dovecot's unsigned int holds
        ("1secss", Text("1secss")),
        ("1wee\u212a", Text("1wee\u212a")),  # KELVIN SIGN lower-cases to k, but is not ASCII
        ("1x", Text("1x")),
        # numeric wildcards: only digits, * and ?
        ("1*", Wildcard("1*", numeric=True)),
        ("*", Wildcard("*", numeric=True)),
        ("1?3", Wildcard("1?3", numeric=True)),
        # strings: literal (unescaped) or wildcard (escapes kept)
        ("abc", Text("abc")),
        ("", Text("")),
        ("s?LE*", Wildcard("s?LE*", numeric=False)),
        ("a\\*b", Text("a*b")),
        ("a\\?", Text("a?")),
        ("a\\\\b", Text("a\\b")),
        ("a\\*b*", Wildcard("a\\*b*", numeric=False)),
        ("1\\*", Text("1*")),
    ],
)
def test_value_typing(raw: str, typed: TypedValue) -> None:
    node = parse_filter(f'x="{raw}"')
    assert isinstance(node, Field)
    assert node.typed == typed


def test_quoted_and_bare_values_type_alike() -> None:
    assert parse_filter("x=1k") == parse_filter('x="1k"')


# -- canonical printing and info -----------------------------------------------------


@pytest.mark.parametrize(
    ("source", "canonical"),
    [
        ("a=1 OR b=1 AND c=1", "(a=1 OR b=1) AND c=1"),
        ("a=1 or (b=1 and c=1)", "a=1 OR (b=1 AND c=1)"),
        ("not not a = 1", "NOT NOT a=1"),
        ("NOT (a=1 OR b=1)", "NOT (a=1 OR b=1)"),
        ("NOT (a=1 AND b=1)", "NOT (a=1 AND b=1)"),
        ("(a=1 AND b=1) AND c=1", "(a=1 AND b=1) AND c=1"),
        ("a=1 AND (b=1 AND c=1)", "a=1 AND (b=1 AND c=1)"),
        ("x > = 10", "x>=10"),
        ('"cmd_name"=AND', 'cmd_name="and"'),
        ('"my \\"key\\""="v a\\*l"', '"my \\"key\\""="v a\\*l"'),
        ('"and"=""', '"and"=""'),
        ('event="x" AND category="imap"', "event=x AND category=imap"),
    ],
)
def test_canonical_source(source: str, canonical: str) -> None:
    assert str(parse_filter(source)) == canonical
    assert parse_filter(canonical) == parse_filter(source)


def test_info_lists_names_and_flags_mixed_and_or() -> None:
    source = 'event=imap_* OR event="a\\*b" AND category=imap AND (x=1 OR NOT y>2) OR x=3'
    info = compile_filter(source).info
    assert info.event_names == ("imap_*", "a*b")
    assert info.categories == ("imap",)
    assert info.fields == ("x", "y")
    assert info.mixed_and_or_at == source.index("AND")  # the first AND after an OR


@pytest.mark.parametrize(
    "source",
    ["a=1 AND b=1 AND c=1", "(a=1 OR b=1) AND c=1", "a=1 OR (b=1 AND c=1)", "NOT a=1", ""],
)
def test_info_does_not_flag_grouped_or_unmixed_filters(source: str) -> None:
    assert compile_filter(source).info.mixed_and_or_at is None


def test_nodes_refuse_shapes_the_parser_never_makes() -> None:
    with pytest.raises(ValueError, match="not a field key"):
        Field("event", Op.EQ, "x")
    with pytest.raises(ValueError, match="at least two"):
        And((A,))


# -- hypothesis: robustness and round trips ------------------------------------------

SAMPLE_EVENTS = [
    Event(),
    Event(
        "imap_command_finished",
        start_ns=0,
        end_ns=5_000_000,
        categories=["imap"],
        log_type="debug",
        source_file="cmd.c",
        source_line=7,
        fields={
            "a": "SELECT",
            "b": 12,
            "c": ["x", "Y"],
            "d": Timestamp(1),
            "e": "",
            "f": [],
            "x": "127.0.0.1",
        },
    ),
]

FILTER_PIECES = st.sampled_from(
    [*'abxyzAN OT=<>()"\\*?_:.-/%$é\n\t0123456789']
    + [" AND ", " OR ", " NOT ", " and ", "event", "category", "source_location"]
    + ["debug", "duration", "1k", "5m", "10ms", "127.0.0.0/8", "::1", '"', '\\"', "\\*"]
)
FILTER_LIKE = st.lists(FILTER_PIECES, max_size=30).map("".join)


def check_total(source: str) -> None:
    """Compiling gives a filter (that matches without raising) or a FilterSyntaxError."""
    try:
        flt = compile_filter(source)
    except FilterSyntaxError as error:
        position = error.position
    else:
        for event in SAMPLE_EVENTS:
            assert flt.matches(event) in (True, False)
        if flt.ast is not None:
            assert parse_filter(str(flt.ast)) == flt.ast
        return
    assert 0 <= position <= len(source)


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_any_text_compiles_or_raises_filter_syntax_error(source: str) -> None:
    check_total(source)


@settings(max_examples=600, deadline=None)
@given(FILTER_LIKE)
def test_filter_like_text_compiles_or_raises_filter_syntax_error(source: str) -> None:
    check_total(source)


WORD = st.from_regex(r"[A-Za-z0-9:.*?_\-/%]{1,6}", fullmatch=True)
# a raw value is a valid quoted-string body: no bare quote, backslash pairs, and no
# backslash before a newline (the lexer drops those)
RAW_VALUE = st.one_of(
    WORD,
    st.lists(
        st.one_of(
            st.characters(exclude_characters='\\"'),
            st.characters(exclude_characters="\n").map(lambda char: "\\" + char),
            st.sampled_from(["*", "?", "\\*", "1", "k", "m", "."]),
        ),
        max_size=8,
    ).map("".join),
)
KEY = st.one_of(WORD, st.text(max_size=6)).filter(lambda key: key not in SPECIAL_KEYS)
LEAF = st.one_of(
    st.builds(Field, KEY, st.sampled_from(Op), RAW_VALUE),
    st.builds(EventName, RAW_VALUE),
    st.builds(Category, RAW_VALUE),
    st.builds(SourceLocation, RAW_VALUE),
)
TREE = st.recursive(
    LEAF,
    lambda children: st.one_of(
        st.builds(Not, children),
        st.lists(children, min_size=2, max_size=4).map(lambda nodes: And(tuple(nodes))),
        st.lists(children, min_size=2, max_size=4).map(lambda nodes: Or(tuple(nodes))),
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(TREE)
def test_printed_tree_parses_back_to_an_equal_tree(tree: Node) -> None:
    source = str(tree)
    assert parse_filter(source) == tree
    assert compile_filter(source).info.mixed_and_or_at is None
