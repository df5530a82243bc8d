"""A Splunk HTTP Event Collector for tests: ``POST /services/collector/event``.

As HEC does: the token first (no ``Authorization``: 401 code 2; not ``Splunk <token>``:
401 code 3; another token: 403 code 4), then the body, envelopes one after another (any
whitespace between), read in order: a body with none is 400 code 5 "No data"; an
envelope that is not a JSON object, or whose ``time`` is not a number, is 400 code 6
"Invalid data format"; one without ``event`` code 12, a blank one code 13, each with
``invalid-event-number`` (0-based): the envelopes before it are indexed, that one and
those after it are not. ``bad(event)`` names the events to refuse so (code 6), to mix
such failures in. 200 ``{"text":"Success","code":0}`` when all were indexed.

The plan (:class:`~tests.support.http_receiver.Receiver`) adds faults: ``busy()`` is a
503 code 9 "Server is busy" that indexes nothing. :attr:`indexed` holds every envelope
indexed, in order.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

import orjson

from tests.support.http_receiver import Action, Receiver, Respond


def hec_answer(status: int, text: str, code: int, **more: object) -> Respond:
    return Respond(status, body=orjson.dumps({"text": text, "code": code, **more}))


def busy() -> Respond:
    """HEC's 503, code 9."""
    return hec_answer(503, "Server is busy", 9)


def envelopes(body: bytes) -> list[Any]:
    """The JSON values of a HEC body, one after another (whitespace between); an
    undecodable rest is one ``ValueError`` at the end."""
    text = body.decode("utf-8", "replace")
    decoder = json.JSONDecoder()
    found: list[Any] = []
    at = 0
    for _ in range(len(text) + 1):  # each turn takes one value or ends
        while at < len(text) and text[at] in " \t\r\n":
            at += 1
        if at >= len(text):
            break
        try:
            value, at = decoder.raw_decode(text, at)
        except json.JSONDecodeError as exc:
            found.append(ValueError(str(exc)))
            break
        found.append(value)
    return found


class SplunkReceiver(Receiver):
    def __init__(
        self,
        token: str,
        plan: Iterable[str | Action] = (),
        *,
        bad: Callable[[Any], bool] = lambda event: False,
    ) -> None:
        super().__init__(plan, path="/services/collector/event")
        self.token = token
        self.bad = bad
        self.indexed: list[dict[str, Any]] = []
        self._index_lock = threading.Lock()

    def judge(
        self, index: int, headers: tuple[tuple[str, str], ...], body: bytes, action: Respond
    ) -> Respond:
        if not 200 <= action.status < 300:
            return action
        auth = {k.lower(): v for k, v in headers}.get("authorization")
        if auth is None:
            return hec_answer(401, "Token is required", 2)
        scheme, _, token = auth.partition(" ")
        if scheme != "Splunk" or not token:
            return hec_answer(401, "Invalid authorization", 3)
        if token != self.token:
            return hec_answer(403, "Invalid token", 4)
        found = envelopes(body)
        if not found:
            return hec_answer(400, "No data", 5)
        taken: list[dict[str, Any]] = []
        answer = hec_answer(200, "Success", 0)
        for number, envelope in enumerate(found):
            refusal = self._refusal(envelope)
            if refusal is not None:
                text, code = refusal
                answer = hec_answer(400, text, code, **{"invalid-event-number": number})
                break
            taken.append(envelope)
        with self._index_lock:
            self.indexed += taken
        return answer

    def _refusal(self, envelope: Any) -> tuple[str, int] | None:
        if not isinstance(envelope, dict):
            return "Invalid data format", 6
        if not isinstance(envelope.get("time", 0), int | float):
            return "Invalid data format", 6
        if "event" not in envelope:
            return "Event field is required", 12
        event = envelope["event"]
        if event is None or (isinstance(event, str) and not event.strip()):
            return "Event field cannot be blank", 13
        if self.bad(event):
            return "Invalid data format", 6
        return None

    def events(self) -> list[bytes]:
        """Every event indexed, as JSON."""
        with self._index_lock:
            return [orjson.dumps(envelope["event"]) for envelope in self.indexed]

    def indexed_twice(self) -> int:
        counts = Counter(self.events())
        return sum(counts.values()) - len(counts)
