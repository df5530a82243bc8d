"""The daemon's log, caught: a json :class:`~exporter.observe.log.Log` writing into memory,
read back as records (time, level, message and the context keys)."""

from __future__ import annotations

import io
from typing import Any

import orjson

from exporter.observe.log import Log


class CapturedLog:
    """``log`` writes json lines into memory; :meth:`records` closes it (what was waiting is
    written; what comes later is written at once) and parses every line."""

    def __init__(self, level: str = "info") -> None:
        self.out = io.StringIO()
        self.log = Log(level=level, format="json", stream=lambda: self.out)

    def records(self, level: str | None = None) -> list[dict[str, Any]]:
        self.log.close()
        found = [orjson.loads(line) for line in self.out.getvalue().splitlines()]
        return [r for r in found if level is None or r["level"] == level]

    def messages(self, level: str | None = None) -> list[str]:
        return [str(record["message"]) for record in self.records(level)]
