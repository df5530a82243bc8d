"""Splunk's HTTP Event Collector: ``POST /services/collector/event``.

The body is one HEC envelope per event, one after another (HEC's batch form)::

    {"time":1795304647.254352,"host":"vm","source":"dovecot","sourcetype":"dovecot:event","index":"mail","event":{...}}

``time``: the event's time in seconds, its fraction to the microsecond exactly as the
formatted event writes it (:mod:`drivers.bodies.parts`; HEC keeps no finer); ``host``:
the setting, else the event's hostname; ``index``: left out when unset (the token's
default index); ``event``: the formatted event, embedded as the JSON object it is (its
bytes as they are, not a string to parse again). Every request carries ``Authorization:
Splunk <token>`` and, when ``channel`` is set, ``X-Splunk-Request-Channel``.

Statuses (HEC answers ``{"text":...,"code":N}``): 200 code 0, taken (HEC checked the
events' form; without indexer acknowledgment, which we do not poll, that is all it says).
400 is permanent (5 no data, 6 invalid data format, 7 incorrect index, 10/11 a channel
missing or invalid, 12/13 an event field missing or blank, ...); when it names the
``invalid-event-number``, HEC indexed the events before that one and read none after it:
that event is dead-lettered with HEC's reason and those after it are sent again. 401 and
403 (2/3 no or bad authorization, 1/4 a disabled or unknown token) are permanent; 429,
500 (8 internal error), 502, 503 (9 server busy, 18/19 unhealthy) and 504 are retried.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from drivers.base import Batch, Partial
from drivers.bodies import BodyContext
from drivers.bodies.parts import read_event, time_ns_or_now
from exporter.errors import UsageError
from exporter.observe.text import printable
from exporter.secret import Secret

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
"""HEC's: 503 is "server is busy" (code 9) or unhealthy (18, 19); 500 its internal error."""
ANSWERED_STATUSES = frozenset({400})
"""A 400 may name the event it stopped at (``invalid-event-number``)."""
_SHOWN = 200


@dataclass(frozen=True, repr=False)
class SplunkSettings:
    """``[exporter.NAME.splunk]``."""

    token: Secret | None = None
    """The HEC token (``Authorization: Splunk <token>``); required."""
    channel: str | None = None
    """``X-Splunk-Request-Channel``, a UUID (a token with indexer acknowledgment needs one)."""
    host: str | None = None
    """The envelope's ``host``; None: the event's hostname."""
    source: str = "dovecot"
    sourcetype: str = "dovecot:event"
    index: str | None = None
    """None: left out (the token's default index)."""

    def __post_init__(self) -> None:
        if self.token is None:
            raise UsageError(
                "splunk-hec needs its HEC token: [exporter.NAME.splunk] token_env or "
                "token_file (--splunk-token-env, --splunk-token-file)"
            )
        if self.channel is not None:
            problem = channel_problem(self.channel)
            if problem is not None:
                raise UsageError(f"splunk channel: {problem}")

    def __repr__(self) -> str:
        return f"SplunkSettings(token={self.token!r}, index={self.index!r}, ...)"

    @property
    def secrets(self) -> tuple[tuple[str, Secret], ...]:
        """(what, secret) that requests carry (the http driver hides them in every message
        and refuses to send them in clear)."""
        return () if self.token is None else (("Splunk HEC token", self.token),)


def channel_problem(channel: str) -> str | None:
    try:
        uuid.UUID(channel)
    except ValueError:
        shown = printable(channel, 60)
        return f"{shown!r} is not a UUID (like 0f5fc0d2-2b4a-4c67-9f1e-6c1a9a3c0b1e)"
    return None


def hec_time(ns: int) -> bytes:
    """Seconds with six decimals, truncated as Dovecot truncates (never rounded)."""
    sign = "-" if ns < 0 else ""
    seconds, micros = divmod(abs(ns) // 1000, 1_000_000)
    return f"{sign}{seconds}.{micros:06d}".encode()


class SplunkHecBody:
    """A batch as HEC envelopes, one after another."""

    content_type = "application/json"
    retry_statuses: frozenset[int] | None = RETRY_STATUSES
    answered_statuses = ANSWERED_STATUSES
    reads_answer = False

    def __init__(self, context: BodyContext) -> None:
        options = context.options
        if not isinstance(options, SplunkSettings):
            raise UsageError("splunk-hec needs its settings ([exporter.NAME.splunk])")
        headers = {"Authorization": f"Splunk {options.token.reveal() if options.token else ''}"}
        if options.channel is not None:
            headers["X-Splunk-Request-Channel"] = options.channel
        self._headers = headers
        self._host = None if options.host is None else orjson.dumps(options.host)
        tail = b',"source":' + orjson.dumps(options.source)
        tail += b',"sourcetype":' + orjson.dumps(options.sourcetype)
        if options.index is not None:
            tail += b',"index":' + orjson.dumps(options.index)
        self._tail = tail + b',"event":'

    def headers(self) -> Mapping[str, str]:
        return self._headers

    def encode(self, batch: Batch) -> bytes:
        out = bytearray()
        for line in batch.lines():
            event = read_event(line)
            out += b'{"time":' + hec_time(time_ns_or_now(line, event))
            out += b',"host":' + (self._host or _event_host(event))
            out += self._tail + line + b"}\n"
        return bytes(out)

    def answer(self, batch: Batch, status: int, content: bytes) -> Partial | None:
        """A 400 naming the invalid event: the events before it were indexed, it is
        refused, those after it were not read (sent again). None: the status decides."""
        if status not in ANSWERED_STATUSES:
            return None
        said = _said(content)
        number = said.get("invalid-event-number")
        if not isinstance(number, int) or isinstance(number, bool):
            return None
        if not 0 <= number < len(batch):
            return None
        text = printable(str(said.get("text", "")), _SHOWN)
        reason = f"Splunk HEC: HTTP 400: {text} (code {said.get('code')}, this event)"
        return Partial(
            retry=list(range(number + 1, len(batch))),
            retry_reason=f"Splunk HEC stopped at the invalid event before them ({text})",
            rejected={reason: [number]},
        )


def _event_host(event: dict[str, Any]) -> bytes:
    host = event.get("hostname")
    return orjson.dumps(host if isinstance(host, str) and host else "unknown")


def _said(content: bytes) -> dict[str, Any]:
    try:
        said = orjson.loads(content)
    except orjson.JSONDecodeError:
        return {}
    return said if isinstance(said, dict) else {}


def splunk_hec(context: BodyContext) -> SplunkHecBody:
    return SplunkHecBody(context)
