"""The Loki and Splunk HEC stand-ins answer as the collectors do (so that a test against
them means something): Loki's label and ordering checks, HEC's token and envelope checks."""

from __future__ import annotations

import httpx
import orjson

from tests.support.loki_receiver import LokiReceiver
from tests.support.splunk_receiver import SplunkReceiver

JSON = {"Content-Type": "application/json"}


def _push(
    url: str, *streams: tuple[dict[str, str], list[list[str]]], **headers: str
) -> httpx.Response:
    body = orjson.dumps({"streams": [{"stream": s, "values": v} for s, v in streams]})
    return httpx.post(url, content=body, headers={**JSON, **headers}, timeout=10)


def test_loki_refuses_bad_labels_and_out_of_order_entries_and_stores_the_rest() -> None:
    with LokiReceiver(max_labels=2, tenant="t") as loki:
        assert _push(loki.url, ({"job": "a"}, [["1", "x"]])).status_code == 401
        answer = _push(
            loki.url,
            ({"job": "a"}, [["2", "two"], ["1", "one"], ["3", "three"]]),
            ({"9bad": "a"}, [["1", "x"]]),
            ({"a": "1", "b": "2", "c": "3"}, [["1", "x"]]),
            **{"X-Scope-OrgID": "t"},
        )
        assert answer.status_code == 400
        assert "ignored, reason: 'entry out of order'" in answer.text
        assert 'total ignored: 1 out of 3 for stream: {job="a"}' in answer.text
        assert "invalid label name" in answer.text
        assert "has 3 label names; limit 2" in answer.text
        assert loki.lines() == ["two", "three"]
        assert (
            _push(loki.url, ({"job": "a"}, [["4", "four"]]), **{"X-Scope-OrgID": "t"}).status_code
            == 204
        )


def test_loki_refuses_an_entry_too_old_or_too_far_behind() -> None:
    hour = 3600 * 10**9
    with LokiReceiver(oldest_ns=10 * hour, window_ns=hour) as loki:
        assert _push(loki.url, ({"job": "a"}, [[str(20 * hour), "new"]])).status_code == 204
        answer = _push(
            loki.url, ({"job": "a"}, [[str(9 * hour), "old"], [str(18 * hour), "behind"]])
        )
        assert answer.status_code == 400
        assert "has timestamp too old" in answer.text
        assert "entry too far behind" in answer.text
        assert loki.lines() == ["new"]


def test_hec_checks_the_token_then_reads_envelopes_in_order() -> None:
    with SplunkReceiver("tok") as hec:

        def post(body: bytes, auth: str | None = "Splunk tok") -> httpx.Response:
            headers = {} if auth is None else {"Authorization": auth}
            return httpx.post(hec.url, content=body, headers=headers, timeout=10)

        assert post(b'{"event":1}', None).json() == {"text": "Token is required", "code": 2}
        assert post(b'{"event":1}', "Bearer tok").json()["code"] == 3
        assert post(b'{"event":1}', "Splunk other").status_code == 403
        assert post(b"  ").json() == {"text": "No data", "code": 5}
        answer = post(b'{"event":{"a":1}}\n{"event":{"a":2}} {"time":1}{"event":{"a":3}}')
        assert answer.status_code == 400
        assert answer.json() == {
            "text": "Event field is required",
            "code": 12,
            "invalid-event-number": 2,
        }
        assert hec.events() == [b'{"a":1}', b'{"a":2}']
        assert post(b'{"event":"  "}').json()["code"] == 13
        assert post(b'{"time":"x","event":1}').json()["code"] == 6
        assert post(b'{"time":1.5,"event":{"a":4}}').json() == {"text": "Success", "code": 0}
