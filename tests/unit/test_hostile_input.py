"""Hostile input (issue 12): no line, body or message stops a source or the daemon.

Every source (unix, file, stdin, http's /events, /dovecot and /stalwart) and the Python
API are fed hostile input (arbitrary bytes, deep nesting, huge numbers, long lines,
invalid UTF-8, NULs, lone CRs, terminal escapes) interleaved with numbered good events:
each bad one is a counted rejection, every good one is delivered. In process, hypothesis
drives the reader, the pipeline and each source class; end to end, a real ``run`` child
per source type gets a fixed corpus (what hypothesis found plus the known crashers).
"""

from __future__ import annotations

import io
import os
import re
import signal
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import anyio
import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.api import EventExporter, ThreadedEventExporter
from exporter.cli import main
from exporter.config import parse_config
from exporter.errors import EventFormatError, EventParseError
from exporter.event import Event, Timestamp
from exporter.filter import compile_filter
from exporter.formats import FormatSpec, make_formatter
from exporter.formats.reader import read_event
from exporter.routing import Pipeline
from exporter.sources.http import HttpSource, HttpSourceSettings
from exporter.sources.lines import CHUNK_BYTES, LineSplitter
from exporter.sources.stalwart import read_webhook
from exporter.sources.stdin import StdinSource
from exporter.sources.tail import TailSource, TailSourceSettings
from exporter.sources.unix import UnixSource, UnixSourceSettings
from tests.support.drivers import socket_dir
from tests.support.logs import CapturedLog
from tests.support.processes import Child, announced_port, bounded, exporter_child, wait_until
from tests.support.sources import Collector

# -- input -----------------------------------------------------------------------------

CRASHERS = {
    # Each ended `run` with a traceback, losing what the queues held (issue 12).
    "tab-text integer of 5,000 digits": b"event:e\tfield:n=" + b"9" * 5000,
    "json nested 2,000 deep": b'{"event":"e","fields":{"a":' + b"[" * 2000 + b"]" * 2000 + b"}}",
}
HOSTILE: list[bytes] = [
    *CRASHERS.values(),
    b'{"event":"e","fields":{"a":' + b"9" * 5000 + b',"b":"\xff"}}',  # the exact reader
    b'{"event":"e","fields":{"\xff":' + b"{" * 100_000,
    b'{"start_time":1e99999999999999999999}',
    b'{"start_time":' + b"9" * 5000 + b"}",
    b'{"start_time":1.' + b"5" * 100_000 + b"e999999999}",
    b'{"start_time":"2026-11-21T23:42:00.' + b"1" * 100_000 + b'Z"}',
    b"start_time:" + b"1" * 100_000 + b".5",
    b"event:e\tfield:" + b"\x01t" * 100_000,
    b"event:e\tfield:l=" + b"\x01x\x01t" * 50_000 + b"\tfield:l=x",
    b"\xff\xfe\x00\x01" * 1000,
    b"\x00" * 1000,
    b"event:e\rfield:n=1\rstart_time:\r",
    b"\x1b[2J\x1b]0;owned\x07\x9b31m\xe2\x80\xae",
    b'{"event":NaN}',
    b"[]",
    b'"e"',
    b"{",
    b'{"event":"e","fields":{"a":{"b":1}}}',
    b'{"event":"e","fields":{"a":1.5e-7,"b":true}}',
    b'{"event":"e","categories":"' + b"\\u0000" * 10_000 + b'"}',
    b"x" * 300_000,
    b"\r",
]
MAX_LINE = 1 << 20
OVERSIZED = b"event:e\tfield:n=" + b"7" * MAX_LINE  # past every line limit


def good(n: int) -> bytes:
    """Good event ``n``, a tab-text line (no newline)."""
    return b"event:e\tfield:n=good%07d" % n


_GOOD_N = re.compile(r"good([0-9]{7})")


def good_numbers(events: list[Event]) -> list[int]:
    """The numbers of the good events among ``events``, in order."""
    found = []
    for event in events:
        n = event.fields.get("n")
        if event.name == "e" and isinstance(n, str) and (match := _GOOD_N.fullmatch(n)):
            found.append(int(match[1]))
    return found


async def until_good(collector: Collector, last: int) -> None:
    """Until good event ``last`` came (a source keeps the order of its lines)."""
    while last not in good_numbers(collector.events[-1:]):
        await collector.wait_for(len(collector.events) + 1)


def interleaved(bad: list[bytes], first: int = 0) -> tuple[bytes, list[int]]:
    """good, bad, good, bad, ..., good as newline-terminated lines, and the good numbers."""
    numbers = list(range(first, first + len(bad) + 1))
    lines = [good(numbers[0])]
    for line, n in zip(bad, numbers[1:], strict=True):
        lines += [line, good(n)]
    return b"".join(line + b"\n" for line in lines), numbers


_ONE_LINE = st.binary(max_size=300).map(lambda data: data.replace(b"\n", b""))
_JSON_START = st.sampled_from([b"{", b'{"fields":{"a":', b'{"event":"\xff","fields":{"k":'])


@st.composite
def hostile_lines(draw: st.DrawFn) -> bytes:
    """One line a hostile sender might write (no newline in it)."""
    kind = draw(st.integers(0, 6))
    if kind == 0:
        return draw(_ONE_LINE)
    if kind == 1:  # deep nesting, closed or not
        depth = draw(st.integers(20, 3000))
        opener = draw(st.sampled_from([b"[", b"{", b'{"":', b'["\\"",']))
        closer = {b"[": b"]", b"{": b"}", b'{"":': b"}", b'["\\"",': b"]"}[opener]
        return draw(_JSON_START) + opener * depth + b"0" + closer * draw(st.integers(0, depth))
    if kind == 2:  # huge or odd numbers, in json (either reader) or tab-text
        digits = draw(st.integers(15, 6000))
        number = draw(st.sampled_from([b"", b"-"])) + b"9" * digits
        number += draw(st.sampled_from([b"", b".5", b"e999999999", b"e-99999999999999999999"]))
        return draw(st.sampled_from([b'{"start_time":%s}', b"event:e\tfield:n=%s"])) % number
    if kind == 3:  # a good line with bytes put in or taken out
        # Nearly a good line, never one: no edit below makes "good" out of "bad".
        nearly = [good(0).replace(b"good", b"bad"), b'{"event":"e","fields":{"n":"x"}}']
        line = bytearray(draw(st.sampled_from(nearly)))
        for _ in range(draw(st.integers(1, 4))):
            at = draw(st.integers(0, len(line)))
            line[at:at] = draw(st.sampled_from([b"\x00", b"\r", b"\xff", b"\x1b[", b"\t", b'"']))
        if draw(st.booleans()):
            del line[draw(st.integers(0, len(line) - 1)) :]
        return bytes(line).replace(b"\n", b"")
    if kind == 4:  # long lines of one repeated piece
        piece = draw(st.sampled_from([b"\x01t", b"\x01x", b"\t", b"field:a=b\t", b"\\", b"9"]))
        return draw(st.sampled_from([b"event:e\tfield:l=", b"", b"start_time:"])) + piece * (
            draw(st.integers(1000, 50_000))
        )
    if kind == 5:  # invalid UTF-8, NULs and lone CRs in text that is nearly right
        noise = draw(st.lists(st.sampled_from([b"\xc3", b"\x80", b"\x00", b"\r", b"\xed\xa0\x80"])))
        return b'{"event":"' + b"".join(noise) + b'","fields":{"k":"' + b"".join(noise) + b'"}}'
    return draw(st.sampled_from(HOSTILE))


# -- the reader, the filter, the stalwart reader -----------------------------------------


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(hostile_lines())
def test_a_hostile_line_is_read_or_refused_with_a_parse_error(line: bytes) -> None:
    """Nothing but EventParseError: the sources catch everything now, but a reader that
    raises something else has a bug, and its message would say "internal error"."""
    try:
        event = read_event(line)
    except EventParseError as exc:
        message = str(exc)
    else:
        for write in (make_formatter(FormatSpec(format="json")), make_formatter(FormatSpec())):
            with suppress(EventFormatError):
                write(event)
        return
    assert "\x1b" not in message
    assert len(message) < 400


_FILTERS = [
    compile_filter(text)
    for text in (
        "event=e*e AND n=*9*9*9*",
        "n>5 OR n=1.2.3.0/24 OR n=good*",
        'category=x OR NOT l="a b" OR duration>1s',
        'l="*\\**" AND (k=? OR k=*?*?*)',
    )
]


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(hostile_lines())
def test_filters_match_whatever_the_reader_gives(line: bytes) -> None:
    try:
        event = read_event(line)
    except EventParseError:
        return
    for compiled in _FILTERS:
        compiled.matches(event)


def test_a_wildcard_with_many_stars_is_linear_on_a_long_value() -> None:
    """A value of 1 MiB against ``*a*a*...*b`` (100 stars): leftmost segments in atomic
    groups; without them the regex backtracks polynomially (degree: the stars) forever."""
    value = "a" * (1 << 20)
    event = Event("e", fields={"v": value, "l": [value]})
    with bounded(60):
        for mask in ("*a" * 100 + "*b", "?*" * 100 + "b", "*aa?" * 50 + "*b"):
            assert not compile_filter(f"v={mask} OR l={mask}").matches(event)


_JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)


@st.composite
def webhook_bodies(draw: st.DrawFn) -> bytes:
    kind = draw(st.integers(0, 3))
    if kind == 0:
        return draw(st.binary(max_size=300))
    if kind == 1:
        return b'{"events":' + b"[" * draw(st.integers(200, 3000)) + b"]"
    item = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "type": _JSON_VALUES,
                "createdAt": _JSON_VALUES | st.just("2026-11-21T23:42:00Z"),
                "data": _JSON_VALUES,
                "id": _JSON_VALUES,
            },
        )
    )
    body = orjson.dumps({"events": [item]})
    return body if kind == 2 else body.replace(b"2026", b"\xff" * draw(st.integers(1, 3)))


@settings(max_examples=150)
@given(webhook_bodies())
def test_a_hostile_webhook_is_read_or_refused_with_a_parse_error(body: bytes) -> None:
    try:
        read_webhook(body)
    except EventParseError as exc:
        message = str(exc)
    else:
        return
    assert "\x1b" not in message
    assert len(message) < 400


# -- the pipeline and the Python API ---------------------------------------------------------


def _pipeline_config(tmp_path: Path) -> str:
    return f"""
[global]
dead_letter = "{tmp_path / "dead.ndjson"}"
shutdown_timeout = 2.0

[exporter.json]
destination = "file:{tmp_path / "json.ndjson"}"
batch_max_age = 0.01
[exporter.tab]
destination = "file:{tmp_path / "tab.ndjson"}"
format = "tab-text"
batch_max_age = 0.01

[metric.named]
filter = "event=e* AND (n=good* OR n>3 OR n=10.0.0.0/8)"
exporter = "json"
[metric.everything]
filter = "NOT event=zzz"
exporter = "tab"
"""


_ANY_VALUE = st.one_of(
    st.text(max_size=5),
    st.integers(),
    st.floats(),
    st.none(),
    st.binary(max_size=3),
    st.lists(st.integers() | st.text(max_size=3), max_size=3),
    st.builds(Timestamp, st.integers(-(10**30), 10**30)),
)


@st.composite
def api_events(draw: st.DrawFn) -> Event:
    """Events as a careless caller builds them: the constructor checks nothing."""
    build: Any = Event  # the wrong types are the point
    return build(  # type: ignore[no-any-return]
        draw(st.none() | st.text(max_size=4) | st.integers()),
        hostname=draw(st.none() | st.text(max_size=3) | st.integers()),
        start_ns=draw(st.none() | st.integers(-(10**30), 10**30) | st.floats()),
        end_ns=draw(st.none() | st.integers(-(10**30), 10**30)),
        categories=draw(st.lists(st.text(max_size=3) | st.integers(), max_size=2)),
        fields=draw(st.dictionaries(st.text(max_size=3) | st.integers(), _ANY_VALUE, max_size=3)),
    )


@settings(max_examples=100, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(api_events(), max_size=5))
def test_no_event_breaks_a_metric_for_the_others(tmp_path: Path, bad: list[Event]) -> None:
    """Whatever a route's matcher or encoder raises is that metric's rejection: the
    other metrics, and the good events, go on."""
    pipeline = Pipeline.from_config(parse_config(_pipeline_config(tmp_path)))
    logged = CapturedLog()
    pipeline.log = logged.log
    good_events = [Event("e", fields={"n": f"good{i}"}) for i in range(len(bad) + 1)]
    for index, event in enumerate(good_events):
        assert pipeline.offer(event) == []
        if index < len(bad):
            assert pipeline.offer(bad[index]) == []
    named, everything = pipeline.routes
    assert named.matched >= len(good_events)
    assert len(pipeline.exporters["json"].queue) >= len(good_events)
    assert len(pipeline.exporters["tab"].queue) >= len(good_events)
    rejected = named.rejected + everything.rejected
    assert sum(pipeline.counts.rejected.values()) == rejected
    records = logged.records()
    assert len(records) <= rejected
    assert all(record["metric"] in ("named", "everything") for record in records)
    assert all(re.match(r".* rejected: ", record["message"]) for record in records)


def test_a_metric_whose_matcher_or_encoder_breaks_is_rejected_alone(tmp_path: Path) -> None:
    """Regression: offer() caught only EventExporterError from an encoder and nothing
    from a matcher, so one such event ended the source that emitted it."""
    pipeline = Pipeline.from_config(parse_config(_pipeline_config(tmp_path)))
    logged = CapturedLog()
    pipeline.log = logged.log
    named, everything = pipeline.routes

    def broken_encoder(event: Event) -> bytes:
        raise RuntimeError("a bug in a formatter")

    everything.encode = broken_encoder
    pipeline.offer(Event(5))  # type: ignore[arg-type]  # a name the wildcard cannot take
    pipeline.offer(Event("e", fields={"n": "good1"}))
    assert (named.matched, named.rejected) == (1, 1)  # the matcher raised for Event(5)
    assert everything.rejected == 2
    assert len(pipeline.exporters["json"].queue) == 1
    assert pipeline.counts.rejected == {"named": 1, "everything": 2}
    assert pipeline.counts.unmatched == 0
    assert pipeline.lost
    for _ in range(200):
        pipeline.offer(Event("e"))
    warnings = [(record["metric"], record["message"]) for record in logged.records()]
    assert warnings[0][0] == "named"
    assert warnings[0][1].startswith("an event rejected: internal error: TypeError")
    assert warnings[2] == (
        "everything",
        "event 'e' rejected: internal error: RuntimeError('a bug in a formatter')",
    )
    # rate-limited per metric: the first 10 of each at once, then one per 30 s
    assert len(warnings) == 11  # named: 1; everything: 10 of its 202


@pytest.mark.anyio
async def test_the_api_emits_good_events_past_broken_ones(tmp_path: Path) -> None:
    config = parse_config(_pipeline_config(tmp_path))
    broken = [
        Event(5),  # type: ignore[arg-type]
        Event("e", fields={"n": 2**70}),
        Event("e", start_ns=1.5),  # type: ignore[arg-type]
        Event("e", fields={"n": b"\xff"}),  # type: ignore[dict-item]
        Event("e", categories=[7]),  # type: ignore[list-item]
    ]
    with anyio.fail_after(10):
        async with EventExporter(config) as events:
            events.pipeline.log = CapturedLog().log  # not on the test's stderr
            for n, event in enumerate(broken):
                events.emit(Event("e", fields={"n": f"good{n}"}))
                events.emit(event)
                await events.emit_wait(event)
            events.emit(Event("e", fields={"n": f"good{len(broken)}"}))
    delivered = [orjson.loads(line) for line in (tmp_path / "json.ndjson").read_bytes().split()]
    numbers = [d["fields"]["n"] for d in delivered if str(d["fields"].get("n")).startswith("g")]
    assert numbers == [f"good{n}" for n in range(len(broken) + 1)]


_ANY_VALUE = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**200), 2**200),
        st.floats(),
        st.text(max_size=50),
        st.binary(max_size=20),
    ),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=30,
)
_ANY_EVENT = st.builds(
    Event,
    st.one_of(st.text(max_size=30), _ANY_VALUE),
    fields=st.one_of(st.dictionaries(st.text(max_size=10), _ANY_VALUE, max_size=4), _ANY_VALUE),
    categories=st.one_of(st.lists(st.one_of(st.text(max_size=10), _ANY_VALUE), max_size=3)),
    start_ns=st.one_of(st.integers(-(2**70), 2**70), _ANY_VALUE),
    end_ns=st.one_of(st.integers(-(2**70), 2**70), _ANY_VALUE),
)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(hostile=st.lists(_ANY_EVENT, min_size=1, max_size=8))
def test_the_threaded_api_takes_any_event_and_delivers_the_good_ones(
    tmp_path_factory: pytest.TempPathFactory, hostile: list[Event]
) -> None:
    """Whatever a caller builds (wrong types, huge numbers, deep values) is that event's
    rejection: the good events around it are delivered, in order."""
    tmp_path = tmp_path_factory.mktemp("api")
    config = parse_config(_pipeline_config(tmp_path))
    with ThreadedEventExporter(config) as events:
        for n, event in enumerate(hostile):
            events.emit(Event("e", fields={"n": f"good{n}"}))
            events.emit(event)
        events.emit(Event("e", fields={"n": f"good{len(hostile)}"}))
    delivered = [orjson.loads(line) for line in (tmp_path / "json.ndjson").read_bytes().split()]
    numbers = [
        d["fields"]["n"] for d in delivered if re.fullmatch(r"good\d+", str(d["fields"].get("n")))
    ]
    assert numbers[: len(hostile) + 1] == [f"good{n}" for n in range(len(hostile) + 1)]


# -- each source class, in process ------------------------------------------------------------

_SOURCE_EXAMPLES = settings(
    max_examples=25,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
_SMALL_LIMIT = 64 << 10  # so that "longer than the limit" is cheap to reach


@asynccontextmanager
async def _running(source: UnixSource | TailSource) -> AsyncIterator[None]:
    async with anyio.create_task_group() as tasks:
        await tasks.start(source.serve)
        yield
        tasks.cancel_scope.cancel()


def _bad_lines() -> st.SearchStrategy[list[bytes]]:
    return st.lists(hostile_lines() | st.just(b"x" * (_SMALL_LIMIT + 1)), min_size=1, max_size=6)


@_SOURCE_EXAMPLES
@given(_bad_lines())
def test_unix_source_takes_every_good_line_among_hostile_ones(bad: list[bytes]) -> None:
    data, numbers = interleaved(bad)

    async def run(path: str) -> tuple[list[int], int]:
        collector, errors = Collector(), io.StringIO()
        source = UnixSource(
            UnixSourceSettings(path, max_line_bytes=_SMALL_LIMIT), collector, errors
        )
        with anyio.fail_after(20):
            async with _running(source):
                async with await anyio.connect_unix(path) as client:
                    await client.send(data)
                await until_good(collector, numbers[-1])
        assert "Traceback" not in errors.getvalue()
        return good_numbers(collector.events), source.counts.rejected_lines

    with socket_dir() as directory:
        got, rejected = anyio.run(run, os.path.join(directory, "s"))
    assert got == numbers
    assert rejected <= len(bad)


@_SOURCE_EXAMPLES
@given(_bad_lines())
def test_file_source_takes_every_good_line_and_moves_past_the_bad(
    tmp_path_factory: pytest.TempPathFactory, bad: list[bytes]
) -> None:
    data, numbers = interleaved(bad)
    folder = tmp_path_factory.mktemp("tail")
    followed, state = folder / "events", folder / "state"
    followed.write_bytes(data)

    async def run() -> list[int]:
        collector, errors = Collector(), io.StringIO()
        settings_ = TailSourceSettings(
            str(followed), str(state), poll_interval=0.01, max_line_bytes=_SMALL_LIMIT
        )
        source = TailSource(settings_, collector, errors)
        with anyio.fail_after(20):
            async with _running(source):
                await until_good(collector, numbers[-1])
        return good_numbers(collector.events)

    assert anyio.run(run) == numbers
    saved = orjson.loads(state.read_bytes())
    assert saved["offset"] == len(data)  # past every line, the bad ones too
    assert saved["line"] == 2 * len(bad) + 1


@_SOURCE_EXAMPLES
@given(st.lists(hostile_lines() | st.just(OVERSIZED), min_size=1, max_size=6))
def test_stdin_source_takes_every_good_line_among_hostile_ones(
    tmp_path_factory: pytest.TempPathFactory, bad: list[bytes]
) -> None:
    data, numbers = interleaved(bad)
    path = tmp_path_factory.mktemp("stdin") / "in"
    path.write_bytes(data)

    async def run(fd: int) -> StdinSource:
        collector = Collector()
        source = StdinSource("in", collector, io.StringIO(), fd=fd)
        with anyio.fail_after(20):
            await source.serve()  # until the end of its input
        assert good_numbers(collector.events) == numbers
        return source

    fd = os.open(path, os.O_RDONLY)
    try:
        source = anyio.run(run, fd)
    finally:
        os.close(fd)
    assert source.counts.events + source.counts.rejected_lines <= len(numbers) + len(bad)


def _webhook(n: int) -> bytes:
    item = {
        "id": str(n),
        "createdAt": "2026-11-21T23:42:00Z",
        "type": "e",
        "data": {"n": f"good{n:07d}"},
    }
    return orjson.dumps({"events": [item]})


@_SOURCE_EXAMPLES
@given(st.lists(hostile_lines(), min_size=1, max_size=5), st.lists(webhook_bodies(), max_size=3))
def test_http_source_takes_every_good_event_among_hostile_ones(
    bad: list[bytes], hooks: list[bytes]
) -> None:
    """POST /events with the lines, /dovecot with each line, /stalwart with each body."""
    data, numbers = interleaved(bad)

    async def run() -> list[int]:
        collector = Collector()
        source = HttpSource(HttpSourceSettings(port=0), collector)
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tasks:
                await tasks.start(source.serve)
                url = f"http://127.0.0.1:{source.port}"
                async with httpx.AsyncClient(base_url=url, timeout=10) as client:
                    answer = await client.post("/events", content=data)
                    assert answer.status_code in (200, 204), answer.text
                    assert answer.status_code == 204 or answer.json()["accepted"] >= len(numbers)
                    for n, line in enumerate(data.split(b"\n")[:-1]):
                        kind = "application/json" if line[:1] == b"{" else "text/plain"
                        answer = await client.post(
                            "/dovecot", content=line, headers={"content-type": kind}
                        )
                        assert answer.status_code in (204, 400, 415), answer.text
                        assert n % 2 or answer.status_code == 204
                    for n, body in enumerate(hooks):
                        answer = await client.post("/stalwart", content=body)
                        assert answer.status_code in (204, 400), answer.text
                        answer = await client.post("/stalwart", content=_webhook(10**6 + n))
                        assert answer.status_code == 204
                tasks.cancel_scope.cancel()
        return good_numbers(collector.events)

    got = anyio.run(run)
    webhooks = [10**6 + n for n in range(len(hooks))]
    assert [n for n in got if n < 10**6] == numbers * 2  # /events, then /dovecot
    assert [n for n in got if n >= 10**6] == webhooks


# -- a source that breaks anyway (a bug): the queues are not lost ------------------------------


@pytest.fixture
def restore_signals() -> Iterator[None]:
    """``run`` in process leaves SIGTERM, SIGINT and SIGHUP ignored: put them back."""
    handled = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    saved = {signum: signal.getsignal(signum) for signum in handled}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, handled)


@pytest.mark.parametrize(("destination", "status"), [("file", 1), ("unreachable", 3)])
def test_a_source_that_breaks_stops_input_and_what_is_queued_is_delivered(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    restore_signals: None,
    destination: str,
    status: int,
) -> None:
    """Regression: an exception escaping a source ended `run` with a traceback, and every
    event in the memory queues was lost. Now it is a shutdown as at SIGTERM: logged with
    the source's name, input stops, the exporters drain until the deadline, then the
    rest is dead-lettered; exit 1 (nothing lost) or 3."""
    followed, out, dead = tmp_path / "in.log", tmp_path / "out.ndjson", tmp_path / "dead.ndjson"
    followed.write_bytes(b"".join(good(n) + b"\n" for n in range(50)))
    target = f"file:{out}" if destination == "file" else f"unix:{tmp_path / 'nobody.sock'}"
    config = tmp_path / "c.toml"
    config.write_text(
        f"""
[global]
dead_letter = "{dead}"
shutdown_timeout = 0.5
summary_interval = 0
[source.tailed]
type = "file"
path = "{followed}"
poll_interval = 0.01
[exporter.out]
destination = "{target}"
batch_max_age = 60.0
[metric.all]
filter = "event=e"
exporter = "out"
"""
    )
    polls = 0
    poll = TailSource._poll

    async def poll_then_break(self: TailSource) -> None:
        nonlocal polls
        polls += 1
        if polls > 1:  # the 50 lines were taken by the first poll: they wait in the queue
            raise RuntimeError("injected: a bug in the source")
        await poll(self)

    monkeypatch.setattr(TailSource, "_poll", poll_then_break)
    with bounded(60):
        assert main(["run", str(config)]) == status
    stderr = capsys.readouterr().err
    assert " error source=tailed: stopped by an internal error (a bug):" in stderr
    assert "RuntimeError('injected: a bug in the source')" in stderr
    assert "stopping input and delivering what the queues hold" in stderr
    if destination == "file":
        assert "received 50, exported 50, retried 0, dropped 0, dead-lettered 0" in stderr
        assert good_numbers([read_event(line) for line in out.read_bytes().splitlines()]) == list(
            range(50)
        )
    else:
        assert "dead-lettered 50" in stderr
        assert len(dead.read_bytes().splitlines()) == 50


# -- end to end: a real `run` per source type ---------------------------------------------------


def _run_config(tmp_path: Path, sources: str, *, metrics: bool = False) -> Path:
    config = tmp_path / "run.toml"
    listen = 'metrics_listen = "127.0.0.1:0"\n' if metrics else ""
    config.write_text(
        f"""
[global]
dead_letter = "{tmp_path / "dead.ndjson"}"
shutdown_timeout = 5.0
summary_interval = 0
{listen}
{sources}

[exporter.out]
destination = "file:{tmp_path / "out.ndjson"}"
batch_max_age = 0.01

[metric.all]
filter = "event=e"
exporter = "out"
"""
    )
    return config


def _delivered(tmp_path: Path) -> list[int]:
    out = tmp_path / "out.ndjson"
    if not out.exists():
        return []
    return good_numbers([read_event(line) for line in out.read_bytes().splitlines()])


def _stop(child: Child) -> str:
    """SIGTERM; the daemon exits 0 (nothing lost) without a traceback."""
    child.terminate()
    assert child.wait(timeout=15) == 0, bytes(child.stderr).decode(errors="replace")
    return _checked_stderr(child)


def _checked_stderr(child: Child) -> str:
    """What the child wrote, which tells of no bug: every rejection was a reader's."""
    stderr = bytes(child.stderr).decode(errors="replace")
    assert "Traceback" not in stderr
    assert "internal error" not in stderr
    return stderr


def _long_number_delivered(tmp_path: Path) -> bool:
    """The 5,000-digit integer of CRASHERS arrived, as the string it is in tab-text."""
    lines = (tmp_path / "out.ndjson").read_bytes().splitlines()
    return any(read_event(line).fields.get("n") == "9" * 5000 for line in lines)


CRASH_LINES = [good(0), *CRASHERS.values(), good(1)]
"""good 0, the 5,000-digit integer, the 2,000-deep JSON, good 1."""
CRASH_INPUT = b"".join(line + b"\n" for line in CRASH_LINES)


def test_regression_the_crashing_lines_do_not_stop_the_unix_source(tmp_path: Path) -> None:
    with socket_dir() as directory:
        path = os.path.join(directory, "in.sock")
        config = _run_config(tmp_path, f'[source.sock]\ntype = "unix"\npath = "{path}"')
        with exporter_child("run", str(config)) as child:
            assert wait_until(lambda: os.path.exists(path), timeout=15)
            with socket.socket(socket.AF_UNIX) as client:
                client.connect(path)
                client.sendall(CRASH_INPUT)
            assert wait_until(lambda: _delivered(tmp_path) == [0, 1], timeout=15)
            with socket.socket(socket.AF_UNIX) as client:  # still accepting, still reading
                client.connect(path)
                client.sendall(good(2) + b"\n")
            assert wait_until(lambda: _delivered(tmp_path) == [0, 1, 2], timeout=15)
            stderr = _stop(child)
    assert "connection 1, line 3: JSON nested more than 32 levels deep" in stderr
    assert _long_number_delivered(tmp_path)


def test_regression_the_crashing_lines_do_not_stop_the_stdin_source(tmp_path: Path) -> None:
    config = _run_config(tmp_path, '[source.pipe]\ntype = "stdin"')
    with exporter_child("run", str(config)) as child:
        os.write(child.stdin_w, CRASH_INPUT)
        assert wait_until(lambda: _delivered(tmp_path) == [0, 1], timeout=15)
        os.write(child.stdin_w, good(2) + b"\n")
        child.close_stdin()  # the end of the only source: the daemon drains and ends
        assert child.wait(timeout=15) == 1  # lines rejected on stdin: 1, as export exits
    assert _delivered(tmp_path) == [0, 1, 2]
    stderr = _checked_stderr(child)
    assert " warning source=pipe: rejected line 3: JSON nested more than 32 levels deep" in stderr
    assert _long_number_delivered(tmp_path)


def test_regression_the_crashing_lines_do_not_stop_the_file_source_nor_a_restart(
    tmp_path: Path,
) -> None:
    """The saved position moves past the bad lines: a restart neither crashes on them nor
    reads anything again."""
    followed, state = tmp_path / "events.log", tmp_path / "state.json"
    followed.write_bytes(CRASH_INPUT)
    source = (
        f'[source.log]\ntype = "file"\npath = "{followed}"\n'
        f'state_file = "{state}"\npoll_interval = 0.01'
    )
    config = _run_config(tmp_path, source)
    with exporter_child("run", str(config)) as child:
        assert wait_until(lambda: _delivered(tmp_path) == [0, 1], timeout=15)
        stderr = _stop(child)
    assert re.search(r"line 3 \(byte \d+\): JSON nested more than 32 levels deep", stderr)
    assert _long_number_delivered(tmp_path)
    saved = orjson.loads(state.read_bytes())
    assert (saved["offset"], saved["line"]) == (len(CRASH_INPUT), len(CRASH_LINES))
    taken = (tmp_path / "out.ndjson").read_bytes().count(b"\n")  # the goods, the long number
    with exporter_child("run", str(config)) as child:
        with followed.open("ab") as appending:
            appending.write(good(2) + b"\n")
        assert wait_until(lambda: 2 in _delivered(tmp_path), timeout=15)
        assert (tmp_path / "out.ndjson").read_bytes().count(b"\n") == taken + 1  # nothing again
        _stop(child)
    assert _delivered(tmp_path) == [0, 1, 2]


# -- a reader that breaks anyway: each source rejects that line alone ------------------------


def _breaking_reader(line: bytes) -> Event:
    """read_event, but a line holding ``boom`` raises what no reader means to raise."""
    if b"boom" in line:
        raise ValueError("a bug in a reader")
    return read_event(line)


BOOM_INPUT, BOOM_GOODS = interleaved([b"event:e\tfield:boom=1"] * 3)


@pytest.mark.anyio
async def test_unix_source_rejects_a_line_whose_reading_breaks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Regression: _event caught only EventExporterError: a ValueError (like Python's
    integer digit limit) ended the source and the daemon."""
    monkeypatch.setattr("exporter.sources.lines.read_event", _breaking_reader)
    collector, errors = Collector(), io.StringIO()
    with socket_dir() as directory:
        path = os.path.join(directory, "s")
        source = UnixSource(UnixSourceSettings(path), collector, errors)
        with anyio.fail_after(10):
            async with _running(source):
                async with await anyio.connect_unix(path) as client:
                    await client.send(BOOM_INPUT)
                await until_good(collector, BOOM_GOODS[-1])
    assert good_numbers(collector.events) == BOOM_GOODS
    assert source.counts.rejected_lines == 3
    assert "connection 1, line 2: internal error: ValueError('a bug in a reader')" in (
        errors.getvalue()
    )


@pytest.mark.anyio
async def test_file_source_rejects_a_line_whose_reading_breaks_and_moves_past_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: _take caught only EventExporterError: the source ended, its saved
    offset still before the line, and every restart ended on it again."""
    monkeypatch.setattr("exporter.sources.lines.read_event", _breaking_reader)
    followed, state = tmp_path / "events", tmp_path / "state"
    followed.write_bytes(BOOM_INPUT)
    collector, errors = Collector(), io.StringIO()
    settings_ = TailSourceSettings(str(followed), str(state), poll_interval=0.01)
    source = TailSource(settings_, collector, errors)
    with anyio.fail_after(10):
        async with _running(source):
            await until_good(collector, BOOM_GOODS[-1])
    assert good_numbers(collector.events) == BOOM_GOODS
    assert "line 2 (byte 28): internal error: ValueError('a bug in a reader')" in (
        errors.getvalue()
    )
    assert orjson.loads(state.read_bytes())["offset"] == len(BOOM_INPUT)


@pytest.mark.anyio
async def test_stdin_source_rejects_a_line_whose_reading_breaks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("exporter.sources.lines.read_event", _breaking_reader)
    (tmp_path / "in").write_bytes(BOOM_INPUT)
    collector, errors = Collector(), io.StringIO()
    fd = os.open(tmp_path / "in", os.O_RDONLY)
    try:
        source = StdinSource("pipe", collector, errors, fd=fd)
        with anyio.fail_after(10):
            await source.serve()
    finally:
        os.close(fd)
    assert good_numbers(collector.events) == BOOM_GOODS
    assert (source.counts.events, source.counts.rejected_lines) == (4, 3)
    assert "source pipe: line 2: internal error: ValueError('a bug in a reader')" in (
        errors.getvalue()
    )


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def test_every_source_of_a_daemon_takes_its_good_events_among_the_corpus(tmp_path: Path) -> None:
    """One `run` with a unix, a file, a stdin and an http source, each fed the corpus
    (HOSTILE and a line longer than every limit) between numbered good events: every good
    one is delivered, each source counts its rejections, and the daemon still answers."""
    corpus = [*HOSTILE, OVERSIZED]
    followed = tmp_path / "events.log"
    on_file, file_goods = interleaved(corpus, first=100_000)
    followed.write_bytes(on_file)
    on_unix, unix_goods = interleaved(corpus, first=0)
    on_stdin, stdin_goods = interleaved(corpus, first=200_000)
    on_events, events_goods = interleaved(corpus, first=300_000)
    on_dovecot, dovecot_goods = interleaved(corpus, first=400_000)
    hooks = [b"", b"{", b'{"events":' + b"[" * 5000, _webhook(1).replace(b'"e"', b"7")]
    hook_goods = list(range(500_000, 500_000 + len(hooks) + 1))
    with socket_dir() as directory:
        sock = os.path.join(directory, "in.sock")
        sources = f"""
[source.sock]
type = "unix"
path = "{sock}"
[source.log]
type = "file"
path = "{followed}"
poll_interval = 0.01
[source.pipe]
type = "stdin"
[source.web]
type = "http"
listen = "127.0.0.1:0"
"""
        config = _run_config(tmp_path, sources, metrics=True)
        with exporter_child("run", str(config)) as child:
            port = announced_port(child, rb"source=web: listening on http://127\.0\.0\.1:(\d+)")
            scrape = announced_port(child, rb"metrics on http://127\.0\.0\.1:(\d+)/metrics")
            writer = threading.Thread(target=_write_all, args=(child.stdin_w, on_stdin))
            writer.start()
            with socket.socket(socket.AF_UNIX) as client:
                client.connect(sock)
                client.sendall(on_unix)
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as web:
                answer = web.post("/events", content=on_events)
                assert answer.status_code == 200
                assert answer.json()["accepted"] >= len(events_goods)
                assert len(answer.json()["rejected"]) == 10  # at most 10 are listed
                for n, line in enumerate(on_dovecot.split(b"\n")[:-1]):
                    kind = "application/json" if line[:1] == b"{" else "text/plain"
                    answer = web.post("/dovecot", content=line, headers={"content-type": kind})
                    assert answer.status_code == 204 if n % 2 == 0 else answer.status_code != 500
                for n, body in zip(hook_goods, [*hooks, None], strict=True):
                    assert web.post("/stalwart", content=_webhook(n)).status_code == 204
                    if body is not None:
                        assert web.post("/stalwart", content=body).status_code == 400
                writer.join(timeout=30)
                expected = (
                    sorted(unix_goods + file_goods + stdin_goods + events_goods + dovecot_goods)
                    + hook_goods
                )
                assert wait_until(lambda: sorted(_delivered(tmp_path)) == expected, timeout=30)
                # still answering: /metrics, and one more event
                metrics = httpx.get(f"http://127.0.0.1:{scrape}/metrics", timeout=10).text
                assert web.post("/events", content=good(600_000)).status_code == 204
                assert wait_until(lambda: 600_000 in _delivered(tmp_path), timeout=15)
            stderr = _stop(child)
    rejected = dict(re.findall(r'source_rejected_lines_total\{source="(\w+)"\} (\d+)', metrics))
    assert set(rejected) == {"sock", "log", "pipe", "web"}
    assert all(int(count) >= len(corpus) // 2 for count in rejected.values()), rejected
    assert "connection 1, line 4: JSON nested more than 32 levels deep" in stderr
    assert "\x1b" not in stderr


def test_a_line_longer_than_many_chunks_is_one_line() -> None:
    """Without a line limit (export's), a line's pieces are kept and joined once, at its
    newline (joined chunk by chunk it was quadratic: 4 s for 50 MiB; this checks the
    lines, not the time)."""
    splitter = LineSplitter()
    piece = b"x" * CHUNK_BYTES
    assert all(splitter.feed(piece) == [] for _ in range(20))
    assert splitter.feed(b"y\r\nevent:e\r") == [piece * 20 + b"y"]
    assert splitter.feed(b"\n") == [b"event:e"]
    assert splitter.feed(piece + b"\nz") == [piece]
    assert splitter.feed(b"") == [b"z"]
    assert splitter.feed(b"") == []
