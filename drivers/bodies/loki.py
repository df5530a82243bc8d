"""Grafana Loki's push API, JSON: ``POST /loki/api/v1/push``.

The body is ``{"streams":[{"stream":{LABELS},"values":[["NS","LINE"],...]},...]}``: each
event one entry, its time in nanoseconds as a string (exactly the time the formatted
event writes, :mod:`drivers.bodies.parts`), its line the formatted event itself. Entries
are grouped in streams by their label set and sorted by time within each stream: a Loki
before 2.4 (or with ``unordered_writes`` off) refuses a stream's entry older than the one
before it. Across batches, order is what the exporter keeps (``concurrency = 1``: batches
one after another); Loki 2.4 and later take out-of-order entries back to ``max_chunk_age``
/ 2 (1 h) behind the newest of the stream, and answer 400 "entry too far behind" for an
older one.

Labels (``[exporter.NAME.loki] labels``, label -> template) are what Loki indexes: each
label set is a stream with its own index entries and chunks, so a label must take few
values. A template is text with parts of the event that take few: ``{hostname}``,
``{event}`` (its name), ``{category}`` (its first category) and ``{category:PREFIX}``
(what follows ``PREFIX:`` in its first category starting so: ``{category:service}`` is
``imap`` for ``service:imap``); ``{{`` and ``}}`` are braces. Anything else between braces
(a field: a user, a session, an address) is refused when the configuration is read: its
values are one per login, a stream each, which is what Loki's docs call high cardinality.
A part the event lacks is ``unknown`` (a label is never empty: Loki takes an empty label
as no label).

Statuses: 2xx (204) stored; 429 (a rate limit) and 5xx retried (but 501 and 505, which
no retry changes); any other status, a 400 above all (invalid labels, too many, an entry
too old), is permanent: the batch goes to the dead letters with the status and the start
of Loki's answer as its reason. A Loki that stored part of the push before answering 400
(entries too far behind) says so in that text ("total ignored: N out of M").
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from drivers.base import Batch, Partial
from drivers.bodies import BodyContext
from drivers.bodies.parts import read_event, time_ns_or_now
from exporter.errors import UsageError

RETRY_STATUSES = frozenset({408, 429, *range(500, 600)} - {501, 505})
"""Loki's: 429 is its rate limit; a 5xx is an ingester or distributor away. A 400 is
permanent (Fluent Bit retried it forever, fluent-bit#3082)."""
DEFAULT_LABELS: Mapping[str, str] = {"job": "dovecot", "host": "{hostname}"}
MISSING = "unknown"
"""A label's part the event lacks (no hostname, no matching category)."""
_LABEL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TENANT = re.compile(r"[A-Za-z0-9!._*'()-]{1,150}")
_PART = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
ALLOWED_PARTS = "{hostname}, {event}, {category} or {category:PREFIX}"

Part = str | Callable[[dict[str, Any]], str]
"""A template's piece: literal text, or a getter of the event's part."""


def _hostname(event: dict[str, Any]) -> str:
    value = event.get("hostname")
    return value if isinstance(value, str) and value else MISSING


def _name(event: dict[str, Any]) -> str:
    value = event.get("event")
    return value if isinstance(value, str) and value else MISSING


def _categories(event: dict[str, Any]) -> list[str]:
    value = event.get("categories")
    return [c for c in value if isinstance(c, str)] if isinstance(value, list) else []


def _first_category(event: dict[str, Any]) -> str:
    found = _categories(event)
    return found[0] if found and found[0] else MISSING


def _category_after(prefix: str) -> Callable[[dict[str, Any]], str]:
    head = prefix + ":"

    def category(event: dict[str, Any]) -> str:
        for value in _categories(event):
            if value.startswith(head) and len(value) > len(head):
                return value[len(head) :]
        return MISSING

    return category


def compile_template(template: str) -> tuple[Part, ...]:
    """A label's template as its parts; ValueError says why it is refused (a part over
    a field value: label cardinality)."""
    if not template:
        raise ValueError("an empty label is no label in Loki: give it a value or leave it out")
    parts: list[Part] = []
    at = 0
    for match in _PART.finditer(template):
        if match.start() > at:
            parts.append(template[at : match.start()])
        at = match.end()
        token = match.group()
        if token in ("{{", "}}"):
            parts.append(token[0])
            continue
        if token in ("{", "}"):
            raise ValueError(f"a lone {token!r} (write {token * 2} for a brace)")
        name = (match.group(1) or "").strip()
        if name == "hostname":
            parts.append(_hostname)
        elif name == "event":
            parts.append(_name)
        elif name == "category":
            parts.append(_first_category)
        elif name.startswith("category:") and name.removeprefix("category:"):
            parts.append(_category_after(name.removeprefix("category:")))
        else:
            raise ValueError(
                f"label cardinality: {{{name}}} is not a part a label may take "
                f"(only {ALLOWED_PARTS}): a field's values (users, sessions, addresses) are "
                "one per login, each a stream of its own that Loki indexes; they are in the "
                "line already (LogQL: | json)"
            )
    if at < len(template):
        parts.append(template[at:])
    return tuple(parts)


def label_problem(name: str, template: object) -> str | None:
    """Why label ``name`` with ``template`` is refused, or None."""
    if not _LABEL_NAME.fullmatch(name):
        return f"{name!r} is not a Loki label name (letters, digits and _, not a digit first)"
    if name.startswith("__"):
        return f"{name!r}: names starting with __ are Loki's own"
    if not isinstance(template, str):
        return "a label's template is a string"
    try:
        compile_template(template)
    except ValueError as exc:
        return str(exc)
    return None


def tenant_problem(tenant: str) -> str | None:
    if not _TENANT.fullmatch(tenant) or tenant in (".", ".."):
        return (
            f"{tenant!r} is not a Loki tenant ID (1 to 150 of letters, digits and !-_.*'(), "
            "not . or ..)"
        )
    return None


@dataclass(frozen=True)
class LokiSettings:
    """``[exporter.NAME.loki]``."""

    labels: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_LABELS))
    """Label -> template: the stream of each event."""
    tenant: str | None = None
    """Sent as ``X-Scope-OrgID`` (a multi-tenant Loki); None: none."""

    def __post_init__(self) -> None:
        if not self.labels:
            raise UsageError("loki: a stream needs at least one label (labels)")
        for name, template in self.labels.items():
            problem = label_problem(name, template)
            if problem is not None:
                raise UsageError(f"loki label {name}: {problem}")
        if self.tenant is not None:
            problem = tenant_problem(self.tenant)
            if problem is not None:
                raise UsageError(f"loki tenant: {problem}")


class LokiBody:
    """A batch as one push of its streams."""

    content_type = "application/json"
    retry_statuses: frozenset[int] | None = RETRY_STATUSES
    reads_answer = False

    def __init__(self, context: BodyContext) -> None:
        options = context.options
        if not isinstance(options, LokiSettings):
            options = LokiSettings()
        self._labels = tuple(
            (name, compile_template(template)) for name, template in options.labels.items()
        )
        self._headers = {} if options.tenant is None else {"X-Scope-OrgID": options.tenant}

    def headers(self) -> Mapping[str, str]:
        return self._headers

    def labels(self, event: dict[str, Any]) -> tuple[tuple[str, str], ...]:
        """The event's label set, in the configuration's order."""
        return tuple(
            (name, "".join(p if isinstance(p, str) else p(event) for p in parts))
            for name, parts in self._labels
        )

    def encode(self, batch: Batch) -> bytes:
        streams: dict[tuple[tuple[str, str], ...], list[tuple[int, bytes]]] = {}
        for line in batch.lines():
            event = read_event(line)
            streams.setdefault(self.labels(event), []).append((time_ns_or_now(line, event), line))
        out = []
        for labels, entries in streams.items():
            entries.sort(key=_time)  # stable: events of one nanosecond keep their order
            out.append(
                {
                    "stream": dict(labels),
                    "values": [[str(ns), line.decode("utf-8")] for ns, line in entries],
                }
            )
        return orjson.dumps({"streams": out})

    def answer(self, batch: Batch, status: int, content: bytes) -> Partial | None:
        return None


def _time(entry: tuple[int, bytes]) -> int:
    return entry[0]


def loki(context: BodyContext) -> LokiBody:
    return LokiBody(context)
