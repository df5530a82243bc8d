"""The bodies that are only events: ``ndjson`` (the batch as it is) and ``json-array``."""

from __future__ import annotations

from collections.abc import Mapping

from drivers.base import Batch, Partial
from drivers.bodies import BodyContext


class PlainBody:
    """ndjson: one event per line, ``application/x-ndjson`` (json events) or
    ``text/plain`` (tab-text lines are not JSON); json-array: ``[e1,e2,...]``."""

    retry_statuses: frozenset[int] | None = None
    reads_answer = False

    def __init__(self, context: BodyContext, *, array: bool) -> None:
        self._array = array
        if context.event_format != "json":
            self.content_type = "text/plain"
        else:
            self.content_type = "application/json" if array else "application/x-ndjson"

    def headers(self) -> Mapping[str, str]:
        return {}

    def encode(self, batch: Batch) -> bytes:
        data = bytes(batch.data)
        if self._array:
            return b"[" + data[:-1].replace(b"\n", b",") + b"]"
        return data

    def answer(self, batch: Batch, status: int, content: bytes) -> Partial | None:
        return None


def ndjson(context: BodyContext) -> PlainBody:
    return PlainBody(context, array=False)


def json_array(context: BodyContext) -> PlainBody:
    return PlainBody(context, array=True)
