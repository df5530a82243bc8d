"""The Splunk HEC body: envelopes one after another, exact time, the event embedded."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.base import Batch
from drivers.bodies import BodyContext
from drivers.bodies.splunk_hec import (
    RETRY_STATUSES,
    SplunkHecBody,
    SplunkSettings,
    hec_time,
)
from drivers.http import classify_status
from exporter.errors import PermanentDeliveryError, RetryableDeliveryError, UsageError
from exporter.formats.timefmt import make_time_formatter
from exporter.secret import Secret
from tests.support.samples import EVENTS_FILE

TOKEN = Secret("hec-0b8e-SECRET-never-printed")
CHANNEL = "0f5fc0d2-2b4a-4c67-9f1e-6c1a9a3c0b1e"


def _batch(*lines: bytes) -> Batch:
    batch = Batch()
    for line in lines:
        batch.append(line + b"\n")
    return batch


def _body(**options: object) -> SplunkHecBody:
    settings = SplunkSettings(token=TOKEN, **options)  # type: ignore[arg-type]
    return SplunkHecBody(BodyContext("json", settings))


def _envelopes(data: bytes) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in data.splitlines()]


def test_a_real_event_is_one_envelope_with_the_event_embedded_as_its_object() -> None:
    line = EVENTS_FILE.read_bytes().splitlines()[0]
    data = _body(index="mail").encode(_batch(line))
    assert data == (
        b'{"time":1795304647.254352,"host":"vm","source":"dovecot","sourcetype":"dovecot:event",'
        b'"index":"mail","event":' + line + b"}\n"
    )
    assert _envelopes(data)[0]["event"] == orjson.loads(line)


def test_envelopes_follow_one_another_in_the_batchs_order() -> None:
    lines = EVENTS_FILE.read_bytes().splitlines()[:5]
    envelopes = _envelopes(_body(host="mx1", source="s", sourcetype="t").encode(_batch(*lines)))
    assert [e["event"] for e in envelopes] == [orjson.loads(line) for line in lines]
    assert {(e["host"], e["source"], e["sourcetype"]) for e in envelopes} == {("mx1", "s", "t")}
    assert all("index" not in e for e in envelopes)


@given(st.integers(0, 253_402_300_799 * 10**9), st.sampled_from(["rfc3339", "unix"]))
def test_the_time_is_the_formatted_time_to_the_microsecond(ns: int, fmt: str) -> None:
    text = make_time_formatter(fmt, "ns")(ns)
    value = f'"{text}"' if fmt == "rfc3339" else text
    line = f'{{"event":"x","hostname":"h","end_time":{value},"fields":{{}}}}'.encode()
    data = _body().encode(_batch(line))
    head = data.split(b",", 1)[0]
    assert head == b'{"time":' + f"{ns // 10**9}.{ns // 1000 % 10**6:06d}".encode()


def test_hec_time_truncates_and_keeps_the_sign() -> None:
    assert hec_time(1_795_304_647_254_352_999) == b"1795304647.254352"
    assert hec_time(-1_500_000_000) == b"-1.500000"


def test_the_token_and_channel_are_headers_and_never_in_a_repr() -> None:
    body = _body(channel=CHANNEL)
    assert body.headers() == {
        "Authorization": f"Splunk {TOKEN.reveal()}",
        "X-Splunk-Request-Channel": CHANNEL,
    }
    assert TOKEN.reveal() not in repr(SplunkSettings(token=TOKEN))


def test_no_token_or_a_channel_that_is_not_a_uuid_is_refused() -> None:
    with pytest.raises(UsageError, match="needs its HEC token"):
        SplunkSettings()
    with pytest.raises(UsageError, match="not a UUID"):
        SplunkSettings(token=TOKEN, channel="chan-1")


def test_a_400_naming_the_invalid_event_settles_it_and_resends_those_after_it() -> None:
    batch = _batch(*EVENTS_FILE.read_bytes().splitlines()[:6])
    answer = b'{"text":"Invalid data format","code":6,"invalid-event-number":2}'
    partial = _body().answer(batch, 400, answer)
    assert partial is not None
    assert partial.retry == [3, 4, 5]
    assert list(partial.rejected.values()) == [[2]]
    (reason,) = partial.rejected
    assert "Invalid data format" in reason
    assert "code 6" in reason


@pytest.mark.parametrize(
    "answer",
    [b'{"text":"No data","code":5}', b"not json", b'{"invalid-event-number":99}', b"[]"],
)
def test_a_400_that_names_no_event_of_the_batch_is_left_to_its_status(answer: bytes) -> None:
    assert _body().answer(_batch(b'{"event":"x"}'), 400, answer) is None


@pytest.mark.parametrize(
    ("status", "answer", "retried"),
    [
        (503, b'{"text":"Server is busy","code":9}', True),
        (503, b'{"text":"HEC is unhealthy, queues are full","code":18}', True),
        (500, b'{"text":"Internal server error","code":8}', True),
        (429, b"", True),
        (400, b'{"text":"Incorrect index","code":7}', False),
        (401, b'{"text":"Token is required","code":2}', False),
        (403, b'{"text":"Invalid token","code":4}', False),
    ],
)
def test_hecs_status_table(status: int, answer: bytes, retried: bool) -> None:
    error = classify_status(
        status,
        "",
        answer.decode(),
        name="hec",
        retry_statuses=RETRY_STATUSES,
        retry_after=None,
        location=None,
        now=0.0,
    )
    assert isinstance(error, RetryableDeliveryError if retried else PermanentDeliveryError)
    assert answer.decode() in str(error)
