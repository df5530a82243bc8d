"""A Grafana Loki push endpoint for tests: ``POST /loki/api/v1/push``, JSON.

It does what Loki's distributor and ingester do with a push, per stream and entry:

* a stream's labels: at least one, valid names (``[a-zA-Z_][a-zA-Z0-9_]*``), at most
  ``max_labels`` (Loki's ``max_label_names_per_series``, 15): else the stream is refused;
* an entry older than ``oldest_ns`` (``reject_old_samples_max_age``) is refused as "too
  old"; one older than the stream's newest entry less ``window_ns`` (Loki 2.4+:
  ``max_chunk_age`` / 2) as "too far behind"; with ``ordered_push`` (Loki before 2.4,
  ``unordered_writes = false``) an entry older than the one before it in the same push as
  "out of order";
* what is valid is stored, and when anything was refused the answer is 400 with Loki's
  text (the ingester's "entry with timestamp ... ignored, reason: '...'", at most 10, then
  "user 'fake', total ignored: N out of M for stream: {...}"), the rest stored all the
  same, as Loki does; else 204.

The plan (:class:`~tests.support.http_receiver.Receiver`) adds faults: a ``429`` or
``503`` stores nothing. ``tenant``: a push without that ``X-Scope-OrgID`` is 401.
Entries are stored by stream (:attr:`streams`); :meth:`lines` gives every line stored.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Iterable

import orjson

from tests.support.http_receiver import Action, Receiver, Respond

_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
LabelSet = tuple[tuple[str, str], ...]


def _rfc3339(ns: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ns // 10**9))


def _go_time(ns: int) -> str:
    """Go's ``time.Time.String()`` in UTC: ``2026-11-21 23:44:07.254352 +0000 UTC``."""
    fraction = f"{ns % 10**9:09d}".rstrip("0")
    head = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ns // 10**9))
    return head + (f".{fraction}" if fraction else "") + " +0000 UTC"


def stream_text(labels: LabelSet) -> str:
    """A label set as Loki writes it: ``{host="vm", job="dovecot"}``."""
    return "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(labels)) + "}"


class LokiReceiver(Receiver):
    def __init__(
        self,
        plan: Iterable[str | Action] = (),
        *,
        max_labels: int = 15,
        oldest_ns: int = 0,
        window_ns: int = 3600 * 10**9,
        ordered_push: bool = True,
        tenant: str | None = None,
    ) -> None:
        super().__init__(plan, path="/loki/api/v1/push")
        self.max_labels = max_labels
        self.oldest_ns = oldest_ns
        self.window_ns = window_ns
        self.ordered_push = ordered_push
        self.tenant = tenant
        self.streams: dict[LabelSet, list[tuple[int, str]]] = {}
        self._newest: dict[LabelSet, int] = {}
        self._store_lock = threading.Lock()
        self.refusals: list[str] = []
        """The text of every 400 answered."""

    def judge(
        self, index: int, headers: tuple[tuple[str, str], ...], body: bytes, action: Respond
    ) -> Respond:
        if not 200 <= action.status < 300:
            return action
        named = {k.lower(): v for k, v in headers}
        if self.tenant is not None and named.get("x-scope-orgid") != self.tenant:
            return Respond(401, body=b"no org id\n")
        if not named.get("content-type", "").startswith("application/json"):
            return Respond(415, body=b"unsupported content type\n")
        try:
            push = orjson.loads(body)
            streams = [
                (
                    tuple((str(k), str(v)) for k, v in stream["stream"].items()),
                    [(int(ts), str(line)) for ts, line, *_ in stream["values"]],
                )
                for stream in push["streams"]
            ]
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            return Respond(400, body=f"error parsing push request: {exc}\n".encode())
        errors: list[str] = []
        with self._store_lock:
            for labels, values in streams:
                problem = self._labels_problem(labels)
                if problem is not None:  # the distributor's: the stream is refused
                    errors.append(problem)
                    continue
                errors += self._store(labels, values)
        if not errors:
            return Respond(204)
        text = "\n".join(errors)
        self.refusals.append(text)
        return Respond(400, body=text.encode() + b"\n")

    def _labels_problem(self, labels: LabelSet) -> str | None:
        if not labels:
            return "error at least one label pair is required per stream"
        for name, _ in labels:
            if not _LABEL_NAME.fullmatch(name):
                shown = stream_text(labels)
                return f"Error parsing labels '{shown}' with error: invalid label name"
        if len(labels) > self.max_labels:
            return (
                f"entry for stream '{stream_text(labels)}' has {len(labels)} label names; "
                f"limit {self.max_labels}"
            )
        return None

    def _store(self, labels: LabelSet, values: list[tuple[int, str]]) -> list[str]:
        """Store a stream's valid entries; Loki's text for those it ignores: the
        distributor's for one too old, the ingester's (at most 10 entries listed, then
        the count) for one out of order or too far behind."""
        errors, ignored = [], []
        stored = self.streams.setdefault(labels, [])
        before = None
        for ns, line in values:
            newest = self._newest.get(labels)
            if ns < self.oldest_ns:
                errors.append(
                    f"entry for stream '{stream_text(labels)}' has timestamp too old: "
                    f"{_rfc3339(ns)}, oldest acceptable timestamp is: {_rfc3339(self.oldest_ns)}"
                )
                continue
            if self.ordered_push and before is not None and ns < before:
                ignored.append(
                    f"entry with timestamp {_go_time(ns)} ignored, reason: 'entry out of order',"
                )
                continue
            if newest is not None and ns < newest - self.window_ns:
                ignored.append(
                    f"entry with timestamp {_go_time(ns)} ignored, reason: 'entry too far behind, "
                    f"entry timestamp is: {_rfc3339(ns)}, oldest acceptable timestamp is: "
                    f"{_rfc3339(newest - self.window_ns)}',"
                )
                continue
            before = ns
            stored.append((ns, line))
            self._newest[labels] = max(ns, newest or ns)
        if ignored:
            errors += ignored[:10]
            errors.append(
                f"user 'fake', total ignored: {len(ignored)} out of {len(values)} for stream: "
                f"{stream_text(labels)}"
            )
        return errors

    def lines(self) -> list[str]:
        """Every line stored, stream after stream."""
        with self._store_lock:
            return [line for entries in self.streams.values() for _, line in entries]

    def stored_twice(self) -> int:
        """Entries stored more than once (same stream, time and line): copies beyond the first."""
        with self._store_lock:
            counts = Counter((k, e) for k, entries in self.streams.items() for e in entries)
        return sum(counts.values()) - len(counts)
