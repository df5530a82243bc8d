"""Reading Dovecot json and tab-text back: typing rules and clear errors."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.errors import EventParseError
from exporter.event import Timestamp
from exporter.formats.reader import read_event
from exporter.formats.text import _TAB_UNESCAPES, tab_unescape

US = 1_000


def test_json_typing_rules() -> None:
    event = read_event(
        b'{"event":"e","hostname":"h","start_time":"2026-11-21T23:42:00.099772Z",'
        b'"end_time":"2026-11-21T23:42:00.1Z","categories":["a"],"fields":{'
        b'"i":-5,"t":1795304520.1,"r":"2026-11-21T23:42:00.099700Z","s":"2026-11-21T23:42:00Z",'
        b'"l":["x","y"],"e":[],"plain":"1.5"}}'
    )
    assert event.name == "e"
    assert event.hostname == "h"
    assert event.start_ns == 1_795_304_520_099_772 * US
    assert event.end_ns == 1_795_304_520_100_000 * US  # top-level times: any precision
    assert event.categories == ["a"]
    assert event.fields == {
        "i": -5,
        "t": Timestamp(1_795_304_520_100_000 * US),
        "r": Timestamp(1_795_304_520_099_700 * US),
        "s": "2026-11-21T23:42:00Z",  # not Dovecot's exact shape: stays a string
        "l": ["x", "y"],
        "e": [],
        "plain": "1.5",
    }


def test_json_rfc3339_strings_stay_strings_in_a_unix_time_line() -> None:
    """Dovecot writes every timeval of a line in one format: with unix start/end times a
    string in RFC 3339 shape was a string field."""
    event = read_event(
        b'{"start_time":1795304520.099772,"fields":{"r":"2026-11-21T23:42:00.099700Z"}}'
    )
    assert event.fields == {"r": "2026-11-21T23:42:00.099700Z"}


def test_json_microseconds_are_exact_for_every_value_in_a_second() -> None:
    for us in range(0, 1_000_000, 997):
        line = b'{"start_time":1795304520.%06d}' % us
        assert read_event(line).start_ns == (1_795_304_520_000_000 + us) * US


def test_json_large_and_negative_times_are_exact() -> None:
    assert read_event(b'{"start_time":9999999999.999999}').start_ns == 9_999_999_999_999_999 * US
    assert read_event(b'{"start_time":-1.500000}').start_ns == -1_500_000 * US
    assert read_event(b'{"start_time":12}').start_ns == 12_000_000_000


def test_json_invalid_utf8_is_kept_not_an_error() -> None:
    event = read_event(b'{"event":"x","fields":{"k":"a\xffb"}}')
    assert event.fields["k"] == "a\udcffb"


def test_json_missing_members_stay_missing() -> None:
    event = read_event(b"{}")
    assert (event.name, event.hostname, event.start_ns, event.categories, event.fields) == (
        None,
        None,
        None,
        [],
        {},
    )


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b'{"event":"x",', "not valid JSON"),
        (b'{"fields":[]}', '"fields" must be an object, not an array'),
        (b'{"evnt":"x"}', "unknown member 'evnt'"),
        (b'{"event":1}', '"event" must be a string'),
        (b'{"fields":{"b":true}}', "field 'b': true is not a Dovecot field type"),
        (b'{"fields":{"n":null}}', "null is not a Dovecot field type"),
        (b'{"fields":{"o":{}}}', "an object is not a Dovecot field type"),
        (b'{"fields":{"l":[1]}}', "must hold only strings"),
        (b'{"fields":{"i":18446744073709551616}}', "does not fit in 64 bits"),
        (b'{"fields":{"i":-9223372036854775809}}', "does not fit in 64 bits"),
        (b'{"categories":"a"}', "array of strings"),
        (b'{"start_time":"yesterday"}', "is not a timestamp"),
        (b'{"start_time":NaN}', "not valid JSON"),
    ],
)
def test_json_errors_say_what_is_wrong(line: bytes, message: str) -> None:
    with pytest.raises(EventParseError, match=message.replace("(", r"\(")):
        read_event(line)


def test_json_syntax_error_has_a_column() -> None:
    with pytest.raises(EventParseError) as info:
        read_event(b'{"event":"x" "y"}')
    assert info.value.column == 14


def test_tabtext_typing_rules() -> None:
    event = read_event(
        b"event:e\thostname:h\tstart_time:1795304520.099772\tend_time:1795304520.100988\t"
        b"category:a\tcategory:b:c\tfield:i=-5\tfield:z=007\tfield:t=1795304520.099700\t"
        b"field:r=2026-11-21T23:42:00.099700Z\tfield:l=x\x01ty\tfield:eq=a=b\tfield:e="
    )
    assert (event.name, event.hostname, event.categories) == ("e", "h", ["a", "b:c"])
    assert event.start_ns == 1_795_304_520_099_772 * US
    assert event.fields == {
        "i": -5,
        "z": "007",  # not canonical: kept as text so it is written back the same
        "t": Timestamp(1_795_304_520_099_700 * US),
        "r": "2026-11-21T23:42:00.099700Z",  # the line's times are unix: a string
        "l": ["x", "y"],
        "eq": "a=b",  # split at the first '='
        "e": "",
    }


def test_tabtext_unescapes_and_keeps_invalid_utf8() -> None:
    event = read_event(b"event:a\x01tb\tfield:k\x01n=v\x01r\xff")
    assert event.name == "a\tb"
    assert event.fields == {"k\n": "v\r\udcff"}


def test_tabtext_empty_category_item_is_skipped() -> None:
    assert read_event(b"event:x\t\tfield:a=b").categories == []


@pytest.mark.parametrize(
    ("line", "message", "column"),
    [
        (b"event:x\tfoo:bar", "unknown item 'foo:bar'", 9),
        (b"event:x\tfield:novalue", "has no '='", 9),
        (b"start_time:soon", "is not a timestamp", 1),
    ],
)
def test_tabtext_errors_name_the_item_and_column(line: bytes, message: str, column: int) -> None:
    with pytest.raises(EventParseError, match=message) as info:
        read_event(line)
    assert info.value.column == column


@pytest.mark.parametrize(
    "line",
    [
        b'{"fields":{"a":1e40031143}}',
        b'{"start_time":1e999999999}',
        b'{"start_time":1e400}',
        b'{"start_time":99999999999999}',
        b"start_time:99999999999999999999.000000",
        b"start_time:\xd9\xa1.5",  # an Arabic-Indic digit is not a digit here
    ],
)
def test_extreme_numbers_are_rejected_lines_not_crashes(line: bytes) -> None:
    with pytest.raises(EventParseError):
        read_event(line)


def test_every_float_time_keeps_its_own_digits() -> None:
    """A line mixing precisions is still read exactly."""
    event = read_event(b'{"start_time":1.500000,"end_time":2.123456789,"fields":{"t":3.123456789}}')
    assert event.end_ns == 2_123_456_789
    assert event.fields["t"] == Timestamp(3_123_456_789)


def test_strings_are_times_only_in_the_lines_own_shape_and_precision() -> None:
    rfc = "2026-11-21T23:42:00.099772Z"
    assert read_event(b'{"fields":{"s":"%s"}}' % rfc.encode()).fields["s"] == rfc  # no times
    ms_line = b'{"start_time":"2026-11-21T23:42:00.099Z","fields":{"s":"%s","m":"%s"}}' % (
        rfc.encode(),
        b"2026-11-21T23:42:00.123Z",
    )
    fields = read_event(ms_line).fields
    assert fields["s"] == rfc  # six digits in a line written at ms: a string
    assert fields["m"] == Timestamp(1_795_304_520_123_000_000)
    tab = read_event(b"start_time:1795304520.099\tfield:s=1795304520.099772\tfield:t=1.500")
    assert tab.fields == {"s": "1795304520.099772", "t": Timestamp(1_500_000_000)}
    assert read_event(b"event:e\tfield:s=1795304520.099772").fields["s"] == "1795304520.099772"


def test_tabtext_key_twice_is_an_error() -> None:
    with pytest.raises(EventParseError, match="field 'a' appears twice") as info:
        read_event(b"event:e\tfield:a=1\tfield:a=2")
    assert info.value.column == 19


def test_a_key_ending_in_a_quote_does_not_hide_nanoseconds() -> None:
    """Found by hypothesis: the raw text of field ``""`` was looked for as '"":', which
    the key '\\"' (written '"\\"":') also holds, so 1 ns read as 0 through a float."""
    line = b'{"categories":[],"fields":{"\\"":"","a_key_long_enough_to_pass":"","":0.000000001}}'
    assert read_event(line).fields == {'"': "", "a_key_long_enough_to_pass": "", "": Timestamp(1)}


# -- hostile input: bounded work and clear errors (issue 12) ------------------------------


def test_a_tabtext_integer_too_long_for_64_bits_is_a_string() -> None:
    """Regression: 5,000 digits made int() raise ValueError (Python's digit limit) and
    that ended the source. The typing rule says: not an int64, so a string."""
    digits = "9" * 5000
    event = read_event(b"event:x\tfield:n=%s\tfield:m=%s" % (digits.encode(), b"2" * 20))
    assert event.fields == {"n": digits, "m": "2" * 20}  # 20 digits, beyond 2**64-1
    assert read_event(b"field:n=18446744073709551615").fields == {"n": 2**64 - 1}
    assert read_event(b"field:n=-9223372036854775808").fields == {"n": -(2**63)}


@pytest.mark.parametrize(
    "line",
    [
        b'{"fields":{"a":' + b"[" * 2000 + b"]" * 2000 + b"}}",  # orjson: too deep
        b'{"fields":{"\xff":' + b"[" * 33 + b"]" * 33 + b"}}",  # invalid UTF-8: exact reader
        b'{"event":' + b"{" * 100_000,  # never closed
        b'{"fields":{"a":"\xff"},"b":' + b'{"":' * 5000 + b"1" + b"}" * 5000 + b"}",
    ],
)
def test_deep_json_is_refused_before_the_recursive_reader(line: bytes) -> None:
    """Regression: the stdlib reader (taken for invalid UTF-8, or when orjson refuses
    more than 1,024 levels) raised RecursionError near 2,000 levels."""
    with pytest.raises(EventParseError, match="nested more than 32 levels deep"):
        read_event(line)


def test_brackets_inside_json_strings_are_not_nesting() -> None:
    text = b'"' + b"[{" * 40 + b'\\"]"'
    line = b'{"event":"\xff","fields":{"a":[' + text + b"]," + text + b":" + text + b"}}"
    event = read_event(line)
    assert event.fields["a"] == ["[{" * 40 + '"]']
    with pytest.raises(EventParseError, match="not valid JSON: Unterminated string"):
        read_event(b'{"event":"\xff' + b'\\"[' * 100)  # an open string runs to the end


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b'{"fields":{"a":' + b"9" * 5000 + b',"b":"\xff"}}', "field 'a': 99999"),
        (b'{"fields":{"a":-' + b"9" * 5000 + b"}}", "field 'a': -9999"),
        (b'{"fields":{"a":' + b"9" * 21 + b"}}", "field 'a': 999999999999999999999 does"),
    ],
)
def test_json_integers_beyond_64_bits_do_not_fit(line: bytes, message: str) -> None:
    """Regression: the exact reader converted any integer, and 5,000 digits raised
    ValueError; now what is longer than 20 characters is never converted."""
    with pytest.raises(EventParseError, match=message) as info:
        read_event(line)
    assert str(info.value).endswith("does not fit in 64 bits")
    assert len(str(info.value)) < 100  # the digits are cut, not repeated


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b'{"start_time":' + b"9" * 5000 + b"}", r'"start_time": 9{40}\.\.\. is out of range'),
        (b'{"start_time":1e99999999999999999999}', "99999 is out of range .years 1 to 9999"),
        (b'{"event":"\xff","fields":{"a":1e-99999999999999999999}}', "exponent out of range"),
        (b'{"start_time":1.' + b"5" * 100_000 + b"e999999999}", r"1\.5{38}\.\.\. is not a time"),
    ],
)
def test_absurd_json_numbers_are_rejected_with_a_short_message(line: bytes, message: str) -> None:
    with pytest.raises(EventParseError, match=message) as info:
        read_event(line)
    assert len(str(info.value)) < 150


def test_a_hundred_thousand_fraction_digits_are_read_exactly() -> None:
    event = read_event(b'{"start_time":1.' + b"123456789" * 11_111 + b"}")
    assert event.start_ns == 1_123_456_789


@pytest.mark.parametrize(
    "line",
    [
        b'{"start_time":"2026-11-21T23:42:00.' + b"1" * 1_000_000 + b'Z"}',
        b"start_time:2026-11-21T23:42:00." + b"1" * 1_000_000 + b"Z",
        b"start_time:" + b"1" * 1_000_000 + b".5",
    ],
)
def test_absurdly_long_times_are_rejected_with_a_short_message(line: bytes) -> None:
    with pytest.raises(EventParseError, match="is not a timestamp") as info:
        read_event(line)
    assert len(str(info.value)) < 300


@pytest.mark.parametrize(
    "line",
    [
        b"event:x\tfoo\x1b[2J\x1b]0;owned\x07" + b"x" * 10_000,
        b"event:x\tfield:\x1b[31m\xff" + b"y" * 10_000,
        b'{"\\u001b[31m' + b"k" * 10_000 + b'":1}',
        b'{"fields":{"\\u202e\\u001b[31m\xff' + b"k" * 10_000 + b'":true}}',
    ],
)
def test_sender_text_in_an_error_is_escaped_and_cut(line: bytes) -> None:
    """An error message goes to stderr: a line cannot write escapes (or 10 kB) there."""
    with pytest.raises(EventParseError) as info:
        read_event(line)
    message = str(info.value)
    assert not {"\x1b", "\u202e", "\udcff"} & set(message)
    assert "\\x1b" in message
    assert len(message) < 200


def test_a_member_twice_or_after_the_fields_keeps_its_nanoseconds() -> None:
    """The raw text of the number that counts decides, whatever the order of the members
    (a field named start_time before the member) and when one is written twice."""
    after = read_event(b'{"fields":{"start_time":1.5},"start_time":1.1234567}')
    assert after.start_ns == 1_123_456_700
    twice = read_event(b'{"start_time":1.5,"start_time":1.1234567,"fields":{"a":1.5,"a":2.1}}')
    assert twice.start_ns == 1_123_456_700
    assert twice.fields == {"a": Timestamp(2_100_000_000)}


@settings(max_examples=300)
@given(st.text(alphabet="\x00\x01\t\n\r01tnrx\udcff", max_size=16))
def test_tab_unescape_fast_path_is_the_reference(text: str) -> None:
    """Every \\x01 starting an escape takes str.replace; the result is the reference's."""
    reference = re.sub(
        "\x01(.)", lambda m: _TAB_UNESCAPES.get(m.group(1), m.group(0)), text, flags=re.DOTALL
    )
    assert tab_unescape(text) == reference
