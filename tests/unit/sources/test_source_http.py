"""The http source over real sockets: Dovecot's http-post requests, NDJSON batches and
Stalwart webhooks accepted; bad, oversized, unsigned and malformed requests answered
clearly while good events keep flowing."""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import hmac
import io
import random
import socket
import zlib
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager

import anyio
import anyio.abc
import anyio.from_thread
import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.event import Event, Timestamp
from exporter.formats import FormatSpec, make_formatter
from exporter.formats.reader import read_event
from exporter.secret import Secret
from exporter.sources.http import HttpSource, HttpSourceSettings
from tests.support.samples import EVENTS_FILE
from tests.support.sources import Collector

pytestmark = pytest.mark.anyio
LINES = EVENTS_FILE.read_bytes().splitlines()
TAB_TEXT = make_formatter(FormatSpec(format="tab-text"))
JSON = {"Content-Type": "application/json"}


@asynccontextmanager
async def serving(**settings: object) -> AsyncIterator[tuple[HttpSource, list[Event], str]]:
    """A source on an ephemeral port whose events land in a list."""
    collector = Collector()
    received = collector.events
    values: dict[str, object] = {"port": 0, **settings}
    source = HttpSource(HttpSourceSettings(**values), collector)  # type: ignore[arg-type]
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tasks:
            await tasks.start(source.serve)
            yield source, received, f"http://127.0.0.1:{source.port}"
            tasks.cancel_scope.cancel()


async def test_dovecot_http_post_requests_json_and_tab_text() -> None:
    async with serving() as (source, received, url), httpx.AsyncClient() as client:
        json_answer = await client.post(
            url + "/dovecot", content=LINES[0], headers={"Content-Type": "application/json"}
        )
        text_body = TAB_TEXT(read_event(LINES[1]))
        text_answer = await client.post(
            url + "/dovecot", content=text_body, headers={"Content-Type": "text/plain"}
        )
    assert (json_answer.status_code, text_answer.status_code) == (204, 204)
    assert received == [read_event(LINES[0]), read_event(text_body)]
    assert source.counts.events == 2


async def test_an_ndjson_batch_keeps_its_good_lines_and_names_the_bad_ones() -> None:
    truncated = LINES[2][: len(LINES[2]) // 2]  # a line cut short
    body = b"\n".join([LINES[0], b"not an event", truncated, LINES[1], b""])
    async with serving() as (source, received, url), httpx.AsyncClient() as client:
        partial = await client.post(url + "/events", content=body)
        good = await client.post(url + "/events", content=b"\n".join(LINES) + b"\n")
        bad = await client.post(url + "/events", content=b"nope\n{]\n")
    assert partial.status_code == 200
    answer = partial.json()
    assert answer["accepted"] == 2
    assert [r["line"] for r in answer["rejected"]] == [2, 3]
    assert "unknown item 'not an event'" in answer["rejected"][0]["error"]
    assert good.status_code == 204
    assert bad.status_code == 400
    assert bad.json()["accepted"] == 0
    assert received == [read_event(LINES[0]), read_event(LINES[1])] + [
        read_event(line) for line in LINES
    ]
    assert source.counts.rejected_lines == 4


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    """A body without Content-Length (chunked): its size is known only while reading."""
    for part in parts:
        yield part


async def test_refusals_are_clear_json_and_the_connection_serves_on() -> None:
    async with (
        serving(max_body_bytes=1000) as (source, received, url),
        httpx.AsyncClient() as client,
    ):
        answers = [
            await client.post(url + "/dovecot", content=b"{}", headers={"Content-Type": "x/y"}),
            await client.post(
                url + "/dovecot", content=b"{bad", headers={"Content-Type": "application/json"}
            ),
            await client.get(url + "/events"),
            await client.post(url + "/metrics", content=b""),
            await client.post(url + "/events", content=b"x" * 1001),
            await client.post(url + "/events", content=_chunks(b"x" * 600, b"y" * 600)),
            await client.post(url + "/events", content=LINES[0]),
        ]
    assert [a.status_code for a in answers] == [415, 400, 405, 404, 413, 413, 204]
    for answer in answers[:-1]:
        assert answer.headers["content-type"] == "application/json"
        assert answer.json()["error"]
    assert "larger than 1000 bytes" in answers[4].json()["error"]
    assert received == [read_event(LINES[0])]
    assert source.refused == {415: 1, 400: 1, 405: 1, 404: 1, 413: 2}


async def test_a_bearer_token_is_required_when_configured() -> None:
    token = "tok-source-secret"
    async with (
        serving(bearer_token=Secret(token)) as (_, received, url),
        httpx.AsyncClient() as client,
    ):
        missing = await client.post(url + "/events", content=LINES[0])
        wrong = await client.post(
            url + "/events", content=LINES[0], headers={"Authorization": "Bearer nope"}
        )
        right = await client.post(
            url + "/events", content=LINES[0], headers={"Authorization": f"Bearer {token}"}
        )
    assert (missing.status_code, wrong.status_code, right.status_code) == (401, 401, 204)
    assert token not in missing.text
    assert len(received) == 1


def _stalwart_body() -> bytes:
    return orjson.dumps(
        {
            "events": [
                {
                    "id": "a1",
                    "createdAt": "2026-11-22T03:00:00.123456Z",
                    "type": "auth.success",
                    "data": {"accountName": "bob", "id": 7, "ok": True, "ips": ["a", "b", "a"]},
                },
                {
                    "id": "a2",
                    "createdAt": "2026-11-22T04:00:00+01:00",
                    "type": "message-ingest.ham",
                    "data": {},
                },
            ]
        }
    )


async def test_stalwart_webhooks_signed_and_mapped() -> None:
    key = "stalwart-key"
    body = _stalwart_body()
    signature = base64.b64encode(hmac.new(key.encode(), body, hashlib.sha256).digest()).decode()
    async with (
        serving(stalwart_signing_key=Secret(key)) as (_, received, url),
        httpx.AsyncClient() as client,
    ):
        unsigned = await client.post(url + "/stalwart", content=body)
        wrong = await client.post(
            url + "/stalwart", content=body + b" ", headers={"X-Signature": signature}
        )
        signed = await client.post(
            url + "/stalwart", content=body, headers={"X-Signature": signature}
        )
    assert (unsigned.status_code, wrong.status_code, signed.status_code) == (401, 401, 204)
    first, second = received
    assert (first.name, first.categories) == ("auth.success", ["auth"])
    assert first.start_ns == 1_795_316_400_123_456_000
    assert first.fields == {"accountName": "bob", "id": 7, "ok": "true", "ips": ["a", "b"]}
    assert (second.name, second.categories) == ("message-ingest.ham", ["message-ingest"])
    assert second.start_ns == 1_795_316_400_000_000_000  # 04:00+01:00 is 03:00Z
    assert not any(isinstance(v, Timestamp) for v in first.fields.values())


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"{", "not JSON"),
        (b"[]", 'expected {"events": [...]}'),
        (b'{"events":[{"type":"a.b"}]}', "events[0].createdAt must be an RFC 3339 time"),
        (b'{"events":[{"type":"","createdAt":"2026-11-22T03:00:00Z"}]}', "events[0].type"),
        (
            b'{"events":[{"type":"a.b","createdAt":"2024-01-01T00:00:00Z","data":{"x":'
            + b"[" * 300
            + b"]" * 300
            + b"}}]}",
            "events[0] cannot be read",
        ),
        (
            b'{"events":[{"type":"a.b","createdAt":"0001-01-01T00:00:00+01:00"}]}',
            "in years 1 to 9999",
        ),
    ],
)
async def test_bad_stalwart_bodies_are_400(body: bytes, error: str) -> None:
    async with serving() as (_, received, url), httpx.AsyncClient() as client:
        answer = await client.post(url + "/stalwart", content=body)
    assert answer.status_code == 400
    assert error in answer.json()["error"]
    assert received == []


async def test_malformed_http_gets_400_and_a_closed_connection() -> None:
    async with serving() as (source, received, url):
        port = source.port

        def exchange() -> bytes:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.sendall(b"THIS IS NOT HTTP\r\n\r\n")
                data = b""
                while chunk := sock.recv(4096):
                    data += chunk
                return data

        answer = await anyio.to_thread.run_sync(exchange)
        async with httpx.AsyncClient() as client:  # the server serves on
            after = await client.post(url + "/events", content=LINES[0])
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert b"malformed HTTP request" in answer
    assert after.status_code == 204
    assert len(received) == 1


async def test_503_with_retry_after_while_busy() -> None:
    busy = [True]
    collector = Collector(busy=lambda: busy[0])
    received = collector.events
    source = HttpSource(HttpSourceSettings(port=0), collector)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tasks, httpx.AsyncClient() as client:
            await tasks.start(source.serve)
            url = f"http://127.0.0.1:{source.port}/events"
            refused = await client.post(url, content=LINES[0])
            busy[0] = False
            accepted = await client.post(url, content=LINES[0])
            tasks.cancel_scope.cancel()
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "1"
    assert accepted.status_code == 204
    assert len(received) == 1


# -- never a crash: any body, any bytes on the socket -------------------------------------

PATHS = ["/dovecot", "/events", "/stalwart", "/", "/x"]
BODY_PARTS = st.sampled_from(
    [
        LINES[0],
        b"\n",
        b"\r\n",
        b"{",
        b"}",
        b'"',
        b"\t",
        b"\xff",
        b"event:",
        b"\x00",
        b"[]",
        b'{"events":[',
        b"createdAt",
        b"\\u0000",
    ]
)


@pytest.fixture(scope="module")
def running_source() -> Iterator[int]:
    """One source for all the examples, on a loop in a thread of its own: its port."""

    source = HttpSource(HttpSourceSettings(port=0, max_body_bytes=1000), Collector())
    with anyio.from_thread.start_blocking_portal() as portal:
        future, _ = portal.start_task(source.serve)
        yield source.port
        future.cancel()


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    path=st.sampled_from(PATHS),
    content_type=st.sampled_from([b"application/json", b"text/plain", b"", b"x/\xff"]),
    body=st.one_of(st.binary(max_size=300), st.lists(BODY_PARTS, max_size=12).map(b"".join)),
)
def test_any_body_gets_an_answer_and_the_server_serves_on(
    running_source: int, path: str, content_type: bytes, body: bytes
) -> None:
    url = f"http://127.0.0.1:{running_source}"
    with httpx.Client(timeout=10) as client:
        headers = {b"Content-Type": content_type} if content_type else {}
        first = client.post(url + path, content=body, headers=headers)
        after = client.post(url + "/events", content=LINES[0])
    assert first.status_code in (200, 204, 400, 401, 404, 413, 415)
    assert after.status_code == 204


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(raw=st.binary(min_size=1, max_size=400))
def test_any_bytes_on_the_socket_get_an_answer_or_a_close(running_source: int, raw: bytes) -> None:
    with socket.create_connection(("127.0.0.1", running_source), timeout=10) as sock:
        sock.sendall(raw)
        sock.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := sock.recv(65536):  # bounded: the server closes, or the timeout fails
            received += chunk
    assert received == b"" or received.startswith(b"HTTP/1.1 ")
    with httpx.Client(timeout=10) as client:
        assert (
            client.post(f"http://127.0.0.1:{running_source}/events", content=LINES[0]).status_code
            == 204
        )


async def test_a_failing_handler_is_a_500_and_the_server_serves_on() -> None:
    calls = [0]

    class Failing(Collector):
        async def emit(self, event: Event) -> None:
            calls[0] += 1
            if calls[0] == 1:
                raise KeyError("a bug")

    source = HttpSource(HttpSourceSettings(port=0), Failing())
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tasks, httpx.AsyncClient() as client:
            await tasks.start(source.serve)
            url = f"http://127.0.0.1:{source.port}/events"
            failed = await client.post(url, content=LINES[0])
            served = await client.post(url, content=LINES[0])
            tasks.cancel_scope.cancel()
    assert failed.status_code == 500
    assert failed.json() == {"error": "internal error: KeyError"}
    assert served.status_code == 204


async def test_a_batch_that_fills_the_queues_is_cut_with_a_503_naming_what_was_taken() -> None:
    collector = Collector(busy=lambda: len(collector.events) >= 2)
    received = collector.events
    source = HttpSource(HttpSourceSettings(port=0), collector)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tasks, httpx.AsyncClient() as client:
            await tasks.start(source.serve)
            url = f"http://127.0.0.1:{source.port}/events"
            answer = await client.post(url, content=b"\n".join(LINES[:5]))
            tasks.cancel_scope.cancel()
    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "1"
    assert "the first 2 events up to line 2 were accepted; send line 3" in answer.json()["error"]
    assert len(received) == 2


# -- cheap to refuse, and no client holds the listener ------------------------------------


async def _read_to_end(stream: anyio.abc.ByteStream) -> bytes:
    """Everything the server sends until it closes its side."""
    received = b""
    with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError):
        while True:
            received += await stream.receive()
    return received


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def _header(answer: bytes, name: bytes) -> bytes | None:
    head = answer.split(b"\r\n\r\n", 1)[0]
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.lower() == name.lower():
            return value.strip()
    return None


async def test_no_token_is_a_401_from_the_head_its_body_never_read() -> None:
    """The head announces 10 MiB and none of it is sent: the answer comes anyway."""
    async with (
        serving(bearer_token=Secret("s3cr3t-value")) as (source, received, url),
        await anyio.connect_tcp("127.0.0.1", source.port) as stream,
    ):
        await stream.send(
            b"POST /events HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (10 << 20)
        )
        answer = await _read_to_end(stream)
    assert _status(answer) == 401
    assert _header(answer, b"connection") == b"close"
    assert _header(answer, b"www-authenticate") == b"Bearer"
    assert b"s3cr3t" not in answer
    assert received == []
    assert source.refused == {401: 1}


async def test_the_bearer_scheme_is_case_insensitive() -> None:
    token = "tok-source-secret"
    async with (
        serving(bearer_token=Secret(token)) as (_, received, url),
        httpx.AsyncClient() as client,
    ):
        answers = [
            await client.post(url + "/events", content=LINES[0], headers={"Authorization": a})
            for a in [f"bearer {token}", f"BEARER  {token}", f"Basic {token}", "bearer", token]
        ]
    assert [a.status_code for a in answers] == [204, 204, 401, 401, 401]
    assert len(received) == 2


async def test_content_length_with_transfer_encoding_is_a_400_and_the_connection_closed() -> None:
    smuggled = b"POST /events HTTP/1.1\r\nHost: x\r\n\r\n"  # would be a second request
    async with (
        serving() as (source, received, _),
        await anyio.connect_tcp("127.0.0.1", source.port) as stream,
    ):
        await stream.send(
            b"POST /events HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled
        )
        answer = await _read_to_end(stream)
    assert _status(answer) == 400
    assert answer.count(b"HTTP/1.1 ") == 1
    assert _header(answer, b"connection") == b"close"
    assert b"Content-Length together with Transfer-Encoding" in answer
    assert received == []


async def _trickle(stream: anyio.abc.ByteStream, data: bytes, pause: float) -> None:
    """A slow sender: one byte every ``pause`` seconds (at most len(data) of them), until
    the server stops taking them."""
    with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        for index in range(len(data)):
            await stream.send(data[index : index + 1])
            await anyio.sleep(pause)


@pytest.mark.parametrize(
    ("settings", "start", "trickled", "said"),
    [
        ({"header_timeout": 1.0}, b"", b"POST /events HTTP/1.1\r\nHost: x\r\n\r\n", b"head"),
        (
            {"request_timeout": 1.0},
            b"POST /events HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n",
            b"x" * 100,
            b"body",
        ),
    ],
)
async def test_a_slow_sender_is_cut_off_at_its_deadline(
    settings: dict[str, float], start: bytes, trickled: bytes, said: bytes
) -> None:
    """A byte every 0.2 s never trips the 60 s idle timeout; the deadline of 1 s does
    (sending it all would take 7 s for the head, 20 s for the body)."""
    async with (
        serving(**settings) as (source, received, _),
        await anyio.connect_tcp("127.0.0.1", source.port) as stream,
    ):
        began = anyio.current_time()
        async with anyio.create_task_group() as tasks:
            await stream.send(start) if start else None
            tasks.start_soon(_trickle, stream, trickled, 0.2)
            answer = await _read_to_end(stream)
            tasks.cancel_scope.cancel()
        took = anyio.current_time() - began
    assert _status(answer) == 408
    assert b"the request " + said + b" did not come within 1 s" in answer
    assert _header(answer, b"connection") == b"close"
    assert took < 5  # cut at 1 s, not when the sender is done
    assert received == []


async def _hold(port: int, count: int) -> list[anyio.abc.SocketStream]:
    """``count`` connections that send nothing (held until the head deadline)."""
    return [await anyio.connect_tcp("127.0.0.1", port) for _ in range(count)]


async def _until(condition: Callable[[], bool]) -> None:
    """Poll a server-side count nothing notifies about: at most 5 s, 10 ms apart."""
    for _ in range(500):
        if condition():
            return
        await anyio.sleep(0.01)
    raise AssertionError("not reached in 5 s")


@pytest.mark.parametrize(
    ("total", "per_peer", "cap_name"),
    [(3, 100, "(max_connections)"), (100, 3, "(max_connections_per_peer)")],
)
async def test_over_a_connection_cap_a_503_at_once_and_accept_goes_on(
    total: int, per_peer: int, cap_name: str
) -> None:
    """Before, accept waited for a free slot: the fourth client was never answered."""
    errors = io.StringIO()
    collector = Collector()
    received = collector.events
    settings = HttpSourceSettings(port=0, max_connections=total, max_connections_per_peer=per_peer)
    source = HttpSource(settings, collector, errors)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tasks, httpx.AsyncClient() as client:
            await tasks.start(source.serve)
            url = f"http://127.0.0.1:{source.port}/events"
            held = await _hold(source.port, 3)
            await _until(lambda: source.open_connections == 3)
            refused = [await client.post(url, content=LINES[0]) for _ in range(4)]
            await held.pop().aclose()
            await _until(lambda: source.open_connections == 2)
            served = await client.post(url, content=LINES[0])
            for stream in held:
                await stream.aclose()
            tasks.cancel_scope.cancel()
    for answer in refused:
        assert answer.status_code == 503
        assert answer.headers["retry-after"] == "1"
        assert answer.headers["connection"] == "close"
        assert cap_name in answer.json()["error"]
    assert served.status_code == 204
    assert len(received) == 1
    assert source.refused == {503: 4}
    reports = errors.getvalue().splitlines()
    assert len(reports) == 1  # rate-limited: one line for the four
    prefix = f"event-exporter: http source 127.0.0.1:{source.port}: 3 connections open"
    assert reports[0].startswith(prefix)


async def test_bad_lines_keep_ten_records_and_a_count() -> None:
    body = b"not an event\n" * 50_000 + LINES[0] + b"\n"
    async with serving() as (source, received, url), httpx.AsyncClient(timeout=30) as client:
        answer = await client.post(url + "/events", content=body)
    assert answer.status_code == 200
    document = answer.json()
    assert document["accepted"] == 1
    assert document["rejected_total"] == 50_000
    assert [r["line"] for r in document["rejected"]] == list(range(1, 11))
    assert source.counts.rejected_lines == 50_000
    assert len(received) == 1


async def test_whatever_one_line_raises_is_that_line_s_rejection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def read(line: bytes) -> Event:
        if line == b"boom":
            raise ValueError("Exceeds the limit (4300 digits) for integer string conversion")
        return read_event(line)

    monkeypatch.setattr("exporter.sources.http.read_event", read)
    async with serving() as (source, received, url), httpx.AsyncClient() as client:
        answer = await client.post(
            url + "/events", content=b"\n".join([LINES[0], b"boom", LINES[1]])
        )
        single = await client.post(url + "/dovecot", content=b"boom", headers=JSON)
    assert answer.status_code == 200
    assert answer.json()["rejected"] == [
        {
            "line": 2,
            "error": "cannot be read: ValueError: Exceeds the limit (4300 digits) for integer "
            "string conversion",
        }
    ]
    assert single.status_code == 400
    assert len(received) == 2


async def test_a_large_bad_body_leaves_the_loop_to_other_clients(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Once the first of 200,000 bad lines is read, another client is answered before the
    last one is (before the fix the loop was held until then)."""
    reading = anyio.Event()

    def read(line: bytes) -> Event:
        reading.set()
        return read_event(line)

    monkeypatch.setattr("exporter.sources.http.read_event", read)
    body = b"not an event\n" * 200_000
    big: list[httpx.Response] = []
    async with (
        serving() as (_, _, url),
        httpx.AsyncClient(timeout=30) as client,
        anyio.create_task_group() as tasks,
    ):

        async def post_big() -> None:
            big.append(await client.post(url + "/events", content=body))

        tasks.start_soon(post_big)
        await reading.wait()
        other = await client.post(url + "/events", content=LINES[0])
        assert not big  # answered while the big body was still being read
    assert other.status_code == 204
    assert big[0].status_code == 400


# -- what was sound, and stays so --------------------------------------------------------


async def test_the_token_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr("exporter.sources.httpserver.hmac.compare_digest", spy)
    async with (
        serving(bearer_token=Secret("tok-x")) as (_, received, url),
        httpx.AsyncClient() as client,
    ):
        wrong = await client.post(
            url + "/events", content=LINES[0], headers={"Authorization": "Bearer no"}
        )
        right = await client.post(
            url + "/events", content=LINES[0], headers={"Authorization": "Bearer tok-x"}
        )
    assert (wrong.status_code, right.status_code) == (401, 204)
    assert compared == [(b"no", b"tok-x"), (b"tok-x", b"tok-x")]


async def test_the_stalwart_signature_is_checked_before_the_body_is_parsed() -> None:
    async with (
        serving(stalwart_signing_key=Secret("k")) as (_, received, url),
        httpx.AsyncClient() as client,
    ):
        unsigned_garbage = await client.post(url + "/stalwart", content=b'{"events": [' * 5000)
    assert unsigned_garbage.status_code == 401
    assert received == []


async def test_a_head_over_64_kib_is_a_431_and_the_connection_closed() -> None:
    async with (
        serving() as (source, received, _),
        await anyio.connect_tcp("127.0.0.1", source.port) as stream,
    ):
        await stream.send(b"POST /events HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * (65 << 10))
        answer = await _read_to_end(stream)
    assert _status(answer) == 431
    assert b"request head larger than 65536 bytes" in answer
    assert _header(answer, b"connection") == b"close"
    assert received == []


async def test_an_accepted_connection_buffers_nothing_until_it_is_read() -> None:
    """anyio's asyncio backend leaves an accepted transport reading: before its task
    asked for a byte, a client's whole body was read into the process (60 clients sending
    10 MiB each grew the daemon by 80 MiB under load). Now what is read is what we ask for."""
    from exporter.sources.httpserver import _hold_reads

    total = 32 << 20
    sent: list[int] = []

    def client(port: int) -> None:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.settimeout(1.5)  # the kernel's buffers full and nobody taking more
            view, done = memoryview(b"x" * total), 0
            try:
                while done < total:
                    done += sock.send(view[done : done + (1 << 20)])
            except TimeoutError:
                pass
            sent.append(done)

    with anyio.fail_after(30):
        multi = await anyio.create_tcp_listener(local_host="127.0.0.1")
        async with multi:
            listener = multi.listeners[0]
            assert isinstance(listener, anyio.abc.SocketListener)
            port = listener.extra(anyio.abc.SocketAttribute.local_port)
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(anyio.to_thread.run_sync, client, port)
                stream = await listener.accept()
                _hold_reads(stream)
            queue: list[bytes] = list(stream._protocol.read_queue)  # type: ignore[attr-defined]
            buffered = sum(len(chunk) for chunk in queue)
            await stream.aclose()
    assert sent[0] < total  # the client was made to wait
    assert buffered <= 1 << 20, f"{buffered} bytes read that nobody asked for"


# -- Content-Encoding: gzip ----------------------------------------------------------------

GZIP = {"Content-Encoding": "gzip"}


async def test_gzip_bodies_are_decoded_and_give_the_same_events_as_plain_ones() -> None:
    """Over 1 MiB decoded (more than one piece of the decoder), in each spelling of gzip,
    in two members one after the other, and on /dovecot."""
    body = b"\n".join(LINES * 60) + b"\n"
    assert len(body) > 1 << 20
    two_members = gzip.compress(b"\n".join(LINES[:3]) + b"\n") + gzip.compress(LINES[3])
    async with serving() as (source, received, url), httpx.AsyncClient() as client:
        plain = await client.post(url + "/events", content=body)
        expected = list(received)
        received.clear()
        answers = [
            await client.post(
                url + "/events", content=gzip.compress(body), headers={"Content-Encoding": name}
            )
            for name in ["gzip", "x-gzip", "GZip", "gzip, identity", "identity ,gzip"]
        ]
        assert received == expected * 5
        received.clear()
        identity = await client.post(
            url + "/events", content=body, headers={"Content-Encoding": "identity"}
        )
        members = await client.post(url + "/events", content=two_members, headers=GZIP)
        dovecot = await client.post(
            url + "/dovecot", content=gzip.compress(LINES[0]), headers={**JSON, **GZIP}
        )
    assert plain.status_code == identity.status_code == 204
    assert [a.status_code for a in answers] == [204] * 5
    assert (members.status_code, dovecot.status_code) == (204, 204)
    assert received == expected + [read_event(line) for line in LINES[:4] + LINES[:1]]
    assert source.refused == {}


async def test_a_gzip_bomb_is_a_413_and_never_inflated_past_the_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """50 MiB of zeros in about 50 KiB: refused once the decoded size passes the limit,
    the decoder having made at most the limit and one byte (not 50 MiB)."""
    limit = 256 << 10
    bomb = gzip.compress(b"\0" * (50 << 20), 9)
    assert len(bomb) < limit
    made: list[int] = []
    real = zlib.decompressobj

    class Spy:
        def __init__(self, wbits: int) -> None:
            self._real = real(wbits)

        def decompress(self, data: bytes, max_length: int = 0) -> bytes:
            out = self._real.decompress(data, max_length)
            made.append(len(out))
            return out

        def __getattr__(self, name: str) -> object:
            return getattr(self._real, name)

    monkeypatch.setattr("exporter.sources.httpserver.zlib.decompressobj", Spy)
    async with (
        serving(max_body_bytes=limit) as (source, received, url),
        httpx.AsyncClient() as client,
    ):
        answer = await client.post(url + "/events", content=bomb, headers=GZIP)
        made_for_the_bomb = sum(made)
        after = await client.post(url + "/events", content=gzip.compress(LINES[0]), headers=GZIP)
    assert answer.status_code == 413
    assert answer.json()["error"] == f"body larger than {limit} bytes once decoded (gzip)"
    assert limit < made_for_the_bomb <= limit + 1
    assert after.status_code == 204
    assert received == [read_event(LINES[0])]
    assert source.refused == {413: 1}


async def test_the_bytes_sent_are_bounded_too_whatever_they_decode_to() -> None:
    """A gzip body over the limit as sent (chunked: no Content-Length to refuse it by)."""
    noise = gzip.compress(random.Random(1).randbytes(3000), 0)
    async with (
        serving(max_body_bytes=2000) as (source, _, url),
        httpx.AsyncClient() as client,
    ):
        answer = await client.post(url + "/events", content=_chunks(noise), headers=GZIP)
    assert answer.status_code == 413
    assert answer.json()["error"] == "body larger than 2000 bytes"


async def test_decoding_a_large_gzip_body_gives_the_other_clients_turns(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Between two pieces of decoding, the loop is offered to the others."""
    calls: list[str] = []
    real_checkpoint, real = anyio.lowlevel.checkpoint, zlib.decompressobj

    async def checkpoint() -> None:
        calls.append("turn")
        await real_checkpoint()

    class Spy:
        def __init__(self, wbits: int) -> None:
            self._real = real(wbits)

        def decompress(self, data: bytes, max_length: int = 0) -> bytes:
            calls.append("decode")
            return self._real.decompress(data, max_length)

        def __getattr__(self, name: str) -> object:
            return getattr(self._real, name)

    monkeypatch.setattr("exporter.sources.httpserver.anyio.lowlevel.checkpoint", checkpoint)
    monkeypatch.setattr("exporter.sources.httpserver.zlib.decompressobj", Spy)
    body = gzip.compress(b"\n" * (5 << 20))  # 5 MiB of empty lines, in one small chunk
    async with serving() as (_, _, url), httpx.AsyncClient() as client:
        answer = await client.post(url + "/events", content=body, headers=GZIP)
    assert answer.status_code == 204
    decoding = calls[calls.index("decode") : len(calls) - calls[::-1].index("decode")]
    assert decoding.count("decode") >= 5
    assert "decode decode" not in " ".join(decoding)


async def test_a_body_that_is_not_gzip_or_is_cut_short_is_a_400() -> None:
    whole = gzip.compress(b"\n".join(LINES))
    async with serving() as (source, received, url), httpx.AsyncClient() as client:
        answers = [
            await client.post(url + "/events", content=body, headers=GZIP)
            for body in [whole[:-10], whole[: len(whole) // 2], b"", LINES[0], whole + b"junk"]
        ]
    assert [a.status_code for a in answers] == [400] * 5
    errors = [a.json()["error"] for a in answers]
    assert errors[:3] == ["the gzip body is truncated: it ended before its gzip trailer"] * 3
    assert errors[3].startswith("the body is not valid gzip: ")
    assert errors[4].startswith("the body is not valid gzip: ")
    assert received == []
    assert source.refused == {400: 5}


async def test_another_content_encoding_is_a_415_from_the_head_its_body_never_read() -> None:
    """The head announces 5 MiB in br and none of it is sent: the answer comes anyway."""
    async with serving() as (source, received, url):
        async with await anyio.connect_tcp("127.0.0.1", source.port) as stream:
            await stream.send(
                b"POST /events HTTP/1.1\r\nHost: x\r\nContent-Encoding: BR\r\n"
                b"Content-Length: %d\r\n\r\n" % (5 << 20)
            )
            answer = await _read_to_end(stream)
        async with httpx.AsyncClient() as client:
            others = [
                await client.post(url + "/events", content=gzip.compress(LINES[0]), headers=[*more])
                for more in [
                    [("Content-Encoding", "deflate")],
                    [("Content-Encoding", "compress")],
                    [("Content-Encoding", "gzip, gzip")],
                    [("Content-Encoding", "gzip"), ("Content-Encoding", "br")],
                ]
            ]
    assert _status(answer) == 415
    assert _header(answer, b"connection") == b"close"
    assert _header(answer, b"accept-encoding") == b"gzip, identity"
    assert b"Content-Encoding 'BR' is not accepted" in answer
    assert [a.status_code for a in others] == [415] * 4
    assert "'gzip, br'" in others[3].json()["error"]
    assert received == []
    assert source.refused == {415: 5}


async def test_a_gzip_stalwart_webhook_is_checked_against_its_decoded_body() -> None:
    """Stalwart signs the body it made: the signature of the decoded body verifies; one
    of the compressed bytes does not."""
    key = "stalwart-key"
    body = _stalwart_body()
    packed = gzip.compress(body)

    def sign(data: bytes) -> str:
        return base64.b64encode(hmac.new(key.encode(), data, hashlib.sha256).digest()).decode()

    async with (
        serving(stalwart_signing_key=Secret(key)) as (_, received, url),
        httpx.AsyncClient() as client,
    ):
        signed = await client.post(
            url + "/stalwart", content=packed, headers={**GZIP, "X-Signature": sign(body)}
        )
        over_the_wire = await client.post(
            url + "/stalwart", content=packed, headers={**GZIP, "X-Signature": sign(packed)}
        )
    assert (signed.status_code, over_the_wire.status_code) == (204, 401)
    assert [event.name for event in received] == ["auth.success", "message-ingest.ham"]
