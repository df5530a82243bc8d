"""The http driver against a real HTTP/1.1 server that fails as scripted
(tests/http_receiver.py): error statuses, Retry-After, an answer that never comes, a
connection reset. One fault at a time through the driver; all of them at once under
100,000 events through the engine; ``export --to http://...`` as a user runs it.

Times are measured on the server's side (``time.monotonic``): when it answered, when the
next request arrived.
"""

from __future__ import annotations

import errno
import gzip
import http.client
import random
import re
import time
from pathlib import Path

import anyio
import orjson
import pytest

from drivers.base import Batch
from drivers.http import HttpDriver, HttpSettings
from exporter.cli import main
from exporter.delivery.deadletter import DeadLetterFile
from exporter.delivery.exporter import DeliverySettings, Exporter
from exporter.delivery.retry import RetryPolicy
from exporter.errors import DeliveryError, PermanentDeliveryError, RetryableDeliveryError
from tests.support import fakes
from tests.support.http_receiver import Receiver
from tests.support.processes import (
    bounded,
    dead_letter_events,
    event_number,
    plain_export,
    summary_line,
)
from tests.support.samples import EVENTS_FILE

CAPTURE_EVENTS = 36
FAST = RetryPolicy(initial_delay=0.01, max_delay=0.05)
READ_TIMEOUT = 1.0
"""How long the driver waits for an answer before giving up on a stalled request (long
enough that a loaded machine does not time out a request the server answered)."""
KEY = "Idempotency-Key"


def json_event(n: int) -> bytes:
    """Event ``n`` as ``export`` encodes it in json (``event_number`` reads it back)."""
    return b'{"event":"e","fields":{"n":"%07d"}}\n' % n


def batch_of(lines: list[bytes]) -> Batch:
    batch = Batch()
    for line in lines:
        batch.append(line)
    return batch


def http_driver(receiver: Receiver, **settings: object) -> HttpDriver:
    values: dict[str, object] = {
        "url": receiver.url,
        "connect_timeout": 5.0,
        "read_timeout": READ_TIMEOUT,
        "request_timeout": 30.0,
        "idempotency_header": KEY,
        **settings,
    }
    return HttpDriver(HttpSettings(**values))  # type: ignore[arg-type]


async def run_exporter(exporter: Exporter, lines: list[bytes]) -> None:
    """Offer every line, end the input, deliver everything; the driver is closed after
    (also when the caller's deadline cancelled the rest)."""
    try:
        await fakes.run_exporter(exporter, lines)
    finally:
        with anyio.CancelScope(shield=True), anyio.fail_after(10):
            await exporter.close_driver()


# -- the receiver does what its plan says ----------------------------------------------------


def _post(conn: http.client.HTTPConnection, body: bytes, **headers: str) -> None:
    conn.request("POST", "/ingest", body=body, headers=headers)


def test_the_receiver_answers_stalls_and_resets_as_planned() -> None:
    """Checked with the standard library's client, so the driver tests below test the
    driver: a reset is a reset (ECONNRESET, not a clean close), a stall never answers,
    a gzip body is recorded decompressed, only 2xx requests count as received."""
    plan = ["503:retry-after=1", "reset", "stall", "429:retry-after-date=5"]
    with Receiver(plan, stall_timeout=10) as receiver:
        conn = http.client.HTTPConnection("127.0.0.1", receiver.port, timeout=5)
        _post(conn, b"a\n")
        answer = conn.getresponse()
        assert (answer.status, answer.getheader("Retry-After")) == (503, "1")
        answer.read()
        _post(conn, b"b\n")  # the same connection: it was kept open
        with pytest.raises(ConnectionResetError) as reset:
            conn.getresponse()
        assert reset.value.errno == errno.ECONNRESET  # not RemoteDisconnected: a clean close
        conn.close()

        stalled = http.client.HTTPConnection("127.0.0.1", receiver.port, timeout=0.3)
        _post(stalled, b"c\n")
        with pytest.raises(TimeoutError):
            stalled.getresponse()  # no answer within 0.3 s; the receiver holds it 10 s
        stalled.close()
        assert receiver.wait_recorded(3, timeout=5)  # the stall ended: the client left

        conn = http.client.HTTPConnection("127.0.0.1", receiver.port, timeout=5)
        _post(conn, b"d\n")
        answer = conn.getresponse()
        assert answer.status == 429
        date = answer.getheader("Retry-After")
        assert date is not None
        assert date.endswith(" GMT")
        answer.read()
        _post(conn, gzip.compress(b"e\nf\n"), **{"Content-Encoding": "gzip"})
        answer = conn.getresponse()
        assert answer.status == 200
        answer.read()
        conn.close()
    requests = receiver.requests
    assert [(r.action, r.status, r.connection) for r in requests] == [
        ("503:retry-after=1", 503, 0),
        ("reset", None, 0),
        ("stall", None, 1),
        ("429:retry-after-date=5", 429, 2),
        ("200", 200, 2),
    ]
    assert requests[2].released_by == "client"
    assert requests[2].ended - requests[2].arrived >= 0.25
    assert requests[4].header("content-encoding") == "gzip"
    assert requests[4].raw_body != requests[4].body
    assert [r.index for r in receiver.received] == [4]
    assert receiver.events() == [b"e", b"f"]


# -- the driver, one fault at a time ---------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("action", "error", "reason", "retry_after"),
    [
        pytest.param("500", RetryableDeliveryError, r"HTTP 500 Internal Server Error", None),
        pytest.param("503:retry-after=1", RetryableDeliveryError, r"HTTP 503 ", (1.0, 1.0)),
        pytest.param("429:retry-after=0", RetryableDeliveryError, r"HTTP 429 ", (0.0, 0.0)),
        # an HTTP-date has whole seconds: 3 s from now is 2 to 3 s away when it arrives
        pytest.param("503:retry-after-date=3", RetryableDeliveryError, r"HTTP 503 ", (1.5, 3.1)),
        pytest.param("429", RetryableDeliveryError, r"HTTP 429 Too Many Requests", None),
        pytest.param("400", PermanentDeliveryError, r"HTTP 400 Bad Request", None),
        pytest.param("404", PermanentDeliveryError, r"HTTP 404 Not Found", None),
        pytest.param("stall", RetryableDeliveryError, r"read timeout", None),
        pytest.param(
            "reset",
            RetryableDeliveryError,
            r": read error: \[Errno 104\] Connection reset by peer",
            None,
        ),
    ],
)
async def test_each_fault_is_classified_and_the_next_attempt_delivers(
    action: str,
    error: type[DeliveryError],
    reason: str,
    retry_after: tuple[float, float] | None,
) -> None:
    lines = [json_event(n) for n in range(3)]
    batch = batch_of(lines)
    with Receiver([action], stall_timeout=10) as receiver:
        driver = http_driver(receiver)
        try:
            with anyio.fail_after(10):
                with pytest.raises(error, match=reason) as failed:
                    await driver.send(batch)
                await driver.send(batch)  # the plan is used up: ok
        finally:
            await driver.aclose()
        assert receiver.wait_recorded(2, timeout=5)
    first, second = receiver.requests
    assert str(failed.value).startswith(receiver.url + ": ")
    if isinstance(failed.value, RetryableDeliveryError):
        if retry_after is None:
            assert failed.value.retry_after is None
        else:
            assert failed.value.retry_after is not None
            assert retry_after[0] <= failed.value.retry_after <= retry_after[1]
    if action == "stall":  # the driver gave up after its read timeout and hung up
        assert first.released_by == "client"
        assert READ_TIMEOUT - 0.05 <= first.ended - first.arrived < READ_TIMEOUT + 5
    assert second.status == 200
    assert first.body == second.body == b"".join(lines)
    assert first.header(KEY) == second.header(KEY) == batch.key
    assert receiver.events() == [line[:-1] for line in lines]


@pytest.mark.anyio
async def test_the_driver_counts_the_connections_it_opens() -> None:
    """For the exporter's debug lines on reconnects: keep-alive reuses one; a reset
    connection is replaced."""
    batch = batch_of([json_event(0)])
    with Receiver(["ok", "ok", "reset"]) as receiver:
        driver = http_driver(receiver)
        try:
            with anyio.fail_after(10):
                await driver.send(batch)
                await driver.send(batch)
                assert driver.connections == 1
                with pytest.raises(RetryableDeliveryError):
                    await driver.send(batch)
                await driver.send(batch)
        finally:
            await driver.aclose()
    assert driver.connections == 2


@pytest.mark.anyio
@pytest.mark.parametrize("compression", ["none", "gzip"])
@pytest.mark.parametrize("body", ["ndjson", "json-array", "single"])
async def test_bodies_arrive_as_each_body_setting_says(body: str, compression: str) -> None:
    lines = [json_event(n) for n in range(3)]
    events = [line[:-1] for line in lines]
    with Receiver() as receiver:
        driver = http_driver(receiver, body=body, compression=compression)
        try:
            with anyio.fail_after(10):
                await driver.send(batch_of(lines))
        finally:
            await driver.aclose()
    requests = receiver.requests
    if body == "ndjson":
        assert [r.body for r in requests] == [b"".join(lines)]
    elif body == "json-array":
        assert [r.body for r in requests] == [b"[" + b",".join(events) + b"]"]
        assert orjson.loads(requests[0].body) == [orjson.loads(e) for e in events]
    else:  # one request per event, the event without its newline, as Dovecot posts it
        assert [r.body for r in requests] == events
    content_type = "application/x-ndjson" if body == "ndjson" else "application/json"
    for request in requests:
        assert request.method == "POST"
        assert request.path == "/ingest"
        assert request.status == 200
        assert request.header("Content-Type") == content_type
        assert request.header("Content-Encoding") == (None if compression == "none" else "gzip")
        assert (request.raw_body == request.body) == (compression == "none")


# -- the engine: 100,000 events through every fault ------------------------------------------


@pytest.mark.anyio
async def test_every_event_is_delivered_or_dead_lettered_through_every_fault(
    tmp_path: Path,
) -> None:
    """The plan meets the first batches: 500, 503 with Retry-After: 1, 429, then 400
    (permanent: batch 0 is dead-lettered after 4 attempts); the next batch stalls (the
    driver gives up after its read timeout), is reset, then delivered; then 98 more.

    Every event arrives once, byte for byte and in order, or is in the dead-letter file;
    the exporter kept quiet for the second the 503 asked; retries of a batch carry its
    idempotency key; the driver keeps its connection alive between requests."""
    total, per_batch = 100_000, 1000
    sent = [json_event(n) for n in range(total)]
    dead = tmp_path / "dead.ndjson"
    plan = ["500", "503:retry-after=1", "429", "400", "stall", "reset"]
    with Receiver(plan, stall_timeout=20) as receiver:
        driver = http_driver(receiver)
        exporter = Exporter(
            driver.name,
            driver,
            DeliverySettings(batch_max_events=per_batch, retry=FAST),
            DeadLetterFile(dead),
            rng=random.Random(1),
        )
        started = time.monotonic()
        with anyio.fail_after(60):
            await run_exporter(exporter, sent)
        took = time.monotonic() - started
    requests = receiver.requests
    dead_events, records = dead_letter_events(dead)
    received = receiver.events()
    duplicates = receiver.duplicates()
    print(
        f"{total} events in {took:.2f} s: {len(requests)} requests on "
        f"{receiver.connections} connections, {len(received)} events received, "
        f"{duplicates} duplicates, {len(dead_events)} dead-lettered; "
        f"exporter: {exporter.stats.summary()}"
    )

    batches = total // per_batch
    assert [(r.action, r.status) for r in requests[:7]] == [
        ("500", 500),
        ("503:retry-after=1", 503),
        ("429", 429),
        ("400", 400),
        ("stall", None),
        ("reset", None),
        ("200", 200),
    ]
    assert len(requests) == batches + 5
    assert {r.status for r in requests[7:]} == {200}
    assert len(receiver.received) == batches - 1

    # Every accepted event: received (once, byte for byte, in order) or dead-lettered.
    undelivered = requests[3].lines()  # batch 0, refused with 400
    assert undelivered == [line[:-1] for line in sent[:per_batch]]
    assert dead_events == undelivered
    assert received == [line[:-1] for line in sent[per_batch:]]
    assert duplicates == 0
    assert {event_number(e) for e in received} | {event_number(e) for e in dead_events} == set(
        range(total)
    )
    for record in records:
        reason = re.escape(receiver.url) + r": HTTP 400 Bad Request\b.*"
        assert re.fullmatch(reason, str(record["reason"]))
        assert record["attempts"] == 4
        assert record["destination"] == receiver.url
    stats = exporter.stats
    assert (stats.received, stats.exported, stats.dead_lettered) == (
        total,
        total - per_batch,
        per_batch,
    )
    assert (stats.retried, stats.delivery.retry_after_pauses) == (5, 1)

    # Retry-After: 1 was honoured: nothing arrived for a second after the 503 went out.
    assert requests[2].arrived - requests[1].ended >= 0.95
    # The stall: the driver gave up after its read timeout, hung up, and tried again.
    stall = requests[4]
    assert stall.released_by == "client"
    assert requests[5].arrived - stall.arrived >= READ_TIMEOUT - 0.05
    # One key per batch, the same on each of its retries.
    keys = [r.header(KEY) for r in requests]
    assert len(set(keys[0:4])) == len(set(keys[4:7])) == 1
    assert len(set(keys)) == batches
    # Keep-alive: a new connection only after the stall and after the reset.
    assert receiver.connections == 3


# -- idempotency keys ------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_retried_batch_keeps_its_idempotency_key_and_other_batches_get_theirs(
    tmp_path: Path,
) -> None:
    """500 then ok: the retry carries the key of the first attempt, so a receiver that
    did take the first one can drop the copy. Each batch has its own key, also a batch
    whose events are byte for byte those of an earlier one (batch 2 repeats batch 0): a
    key names a delivery, and a receiver dropping that batch as a copy would lose it."""
    sent = (
        [json_event(n) for n in range(10)]
        + [json_event(n) for n in range(10, 20)]
        + [json_event(n) for n in range(10)]
    )
    with Receiver(["500"]) as receiver:
        driver = http_driver(receiver)
        exporter = Exporter(
            driver.name,
            driver,
            DeliverySettings(batch_max_events=10, retry=FAST),
            DeadLetterFile(tmp_path / "dead.ndjson"),
            rng=random.Random(1),
        )
        with anyio.fail_after(10):
            await run_exporter(exporter, sent)
    requests = receiver.requests
    keys = [r.header(KEY) for r in requests]
    print(f"idempotency keys: {keys}")
    assert [r.status for r in requests] == [500, 200, 200, 200]
    assert requests[0].body == requests[1].body
    assert requests[1].body == requests[3].body
    assert all(keys)
    assert keys[0] == keys[1]
    assert len(set(keys[1:])) == 3
    assert receiver.events() == [line[:-1] for line in sent]
    assert not (tmp_path / "dead.ndjson").exists()


# -- export --to http://... as a user runs it --------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        pytest.param([], id="ndjson"),
        pytest.param(["--http-compression", "gzip"], id="ndjson-gzip"),
        pytest.param(["--http-body", "single"], id="single"),
    ],
)
def test_export_to_http_delivers_every_event_as_export_prints_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], options: list[str]
) -> None:
    """The server answers 503 first: that batch is sent again and delivered whole. An
    ndjson body is what ``export`` prints; ``single`` posts each event on its own, without
    its newline, as Dovecot's http-post does."""
    expected = plain_export(tmp_path, EVENTS_FILE, [])
    assert expected.count(b"\n") == CAPTURE_EVENTS
    capsys.readouterr()
    dead = tmp_path / "dead.ndjson"
    with Receiver(["503"]) as receiver:
        argv = ["export", "--to", receiver.url, "--dead-letter", str(dead)]
        retry = ["--retry-initial-delay", "0.01", "--retry-max-delay", "0.05"]
        with bounded(30):
            code = main([*argv, *retry, *options, str(EVENTS_FILE)])
    err = capsys.readouterr().err
    assert code == 0, err
    *logged, summary = err.splitlines()
    assert summary == summary_line(receiver.url, CAPTURE_EVENTS, CAPTURE_EVENTS, 1, 0)
    failed, works = logged  # the failure at once, the recovery
    context = f"exporter=export destination={receiver.url}"
    assert re.fullmatch(
        rf"\S+ warning {context}: delivery failed \(attempt 1\): {receiver.url}: HTTP 503 "
        r'Service Unavailable: \{"status":503\}; next try in [0-9.e-]+ s',
        failed,
    ), failed
    assert re.fullmatch(
        rf"\S+ info {context}: delivery works again after failing for [0-9.e-]+ s \(1 failed "
        r"attempt; the last: .*HTTP 503 .*\); \d+ events? delayed",
        works,
    ), works
    requests = receiver.requests
    single = "single" in options
    assert [r.status for r in requests] == [503] + [200] * (CAPTURE_EVENTS if single else 1)
    assert requests[0].body == requests[1].body
    assert requests[0].header(KEY) == requests[1].header(KEY)
    if single:
        assert b"".join(r.body + b"\n" for r in receiver.received) == expected
    else:
        assert b"".join(r.body for r in receiver.received) == expected
    encoding = "gzip" if "gzip" in options else None
    assert {r.header("Content-Encoding") for r in requests} == {encoding}
    assert not dead.exists()


def test_export_to_http_dead_letters_what_the_server_refuses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    expected = plain_export(tmp_path, EVENTS_FILE, [])
    capsys.readouterr()
    dead = tmp_path / "dead.ndjson"
    with Receiver(["400"]) as receiver:
        argv = ["export", "--to", receiver.url, "--dead-letter", str(dead), str(EVENTS_FILE)]
        with bounded(30):
            code = main(argv)
    err = capsys.readouterr().err
    assert code == 3, err
    summary = summary_line(receiver.url, CAPTURE_EVENTS, 0, 0, CAPTURE_EVENTS)
    failed, dead_lettered, last = err.splitlines()
    assert last == summary + f"; dead letters in {dead}"
    refused = f'{receiver.url}: HTTP 400 Bad Request: {{"status":400}}'
    context = f"warning exporter=export destination={receiver.url}"
    assert failed.endswith(f"{context}: delivery failed (attempt 1): {refused}; given up")
    assert dead_lettered.endswith(
        f"{context}: {CAPTURE_EVENTS} events dead-lettered to {dead}: {refused} "
        "(further such warnings: at most one per 30 s)"
    )
    assert [r.status for r in receiver.requests] == [400]
    assert receiver.received == []
    events, records = dead_letter_events(dead)
    assert b"".join(event + b"\n" for event in events) == expected
    for record in records:
        assert str(record["reason"]).startswith(f"{receiver.url}: HTTP 400 Bad Request")
        assert record["attempts"] == 1


def test_the_summary_does_not_repeat_a_token_in_the_url(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with Receiver() as receiver:
        url = receiver.url + "?token=SECRET123"
        dead = ["--dead-letter", str(tmp_path / "dead")]
        assert main(["export", "--to", url, *dead, str(EVENTS_FILE)]) == 0
    err = capsys.readouterr().err
    assert "SECRET123" not in err
    assert f"{receiver.url}: received {CAPTURE_EVENTS}" in err
