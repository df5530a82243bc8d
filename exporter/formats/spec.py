"""What an export writes: format, time format and precision, include set, field list.

Dovecot calls these ``format``, ``time_format``, ``exporter_include`` and ``fields``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Literal

from exporter.errors import UsageError
from exporter.event import Event
from exporter.formats.timefmt import PRECISIONS, TIME_FORMATS, Precision, TimeFormat

FormatName = Literal["json", "tab-text"]
Formatter = Callable[[Event], bytes]
"""Writes one event: Dovecot's body, plus ``\\n`` when made with ``newline=True``."""
FORMATS: Final[tuple[FormatName, ...]] = ("json", "tab-text")
DovecotCompat = Literal["2.3", "2.4"]
DOVECOT_COMPATS: Final[tuple[DovecotCompat, ...]] = ("2.3", "2.4")
"""The Dovecot series whose bytes are written: 2.4 writes ``\\u001B`` (upper-case hex)
and cuts json values at a character boundary; 2.3 writes ``\\u001b`` and cuts bytes."""
INCLUDE_WORDS: Final = ("name", "hostname", "timestamps", "categories", "fields")
ALL_INCLUDES: Final = frozenset(INCLUDE_WORDS)
# Dovecot's log driver cuts longer string values to this many bytes.
LOG_TRUNCATE_BYTES: Final = 1000

_SEPARATORS = re.compile(r"[,\s]+")


def split_list(text: str) -> list[str]:
    """Words separated by commas and/or whitespace; empty words are dropped."""
    return [word for word in _SEPARATORS.split(text) if word]


def parse_include(text: str) -> frozenset[str]:
    """An include set from ``"name hostname"`` or ``"name,fields"``; ``""`` is the empty set.

    :class:`FormatSpec` checks the words."""
    return frozenset(split_list(text))


def parse_fields(text: str) -> tuple[str, ...]:
    """A field list in output order (:class:`FormatSpec` keeps a repeated key once)."""
    return tuple(split_list(text))


@dataclass(frozen=True, slots=True)
class FormatSpec:
    """Everything that decides the bytes written for one event."""

    format: FormatName = "json"
    time_format: TimeFormat = "rfc3339"
    time_precision: Precision = "us"
    include: frozenset[str] = ALL_INCLUDES
    fields: tuple[str, ...] = field(default=())
    """Keys to write, in this order; empty means every field in the event's order."""
    truncate: int | None = None
    """Cut string values longer than this many bytes and append ``...`` (log driver rule)."""
    dovecot_compat: DovecotCompat = "2.4"
    """Whose bytes: Dovecot 2.3's or 2.4's (json escapes and truncation differ)."""

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise UsageError(f"unknown format {self.format!r} (allowed: json, tab-text)")
        if self.time_format not in TIME_FORMATS:
            raise UsageError(f"unknown time format {self.time_format!r} (allowed: rfc3339, unix)")
        if self.time_precision not in PRECISIONS:
            raise UsageError(
                f"unknown time precision {self.time_precision!r} (allowed: s, ms, us, ns)"
            )
        bad = sorted(self.include - ALL_INCLUDES)
        if bad:  # Dovecot only warns; an unknown word is most likely a typo
            raise UsageError(
                f"unknown include word {bad[0]!r} (allowed: {', '.join(INCLUDE_WORDS)})"
            )
        if self.dovecot_compat not in DOVECOT_COMPATS:
            raise UsageError(f"unknown dovecot_compat {self.dovecot_compat!r} (allowed: 2.3, 2.4)")
        if self.truncate is not None and (type(self.truncate) is not int or self.truncate < 1):
            raise UsageError(f"truncate must be a positive number of bytes, got {self.truncate!r}")
        if len(set(self.fields)) != len(self.fields):
            object.__setattr__(self, "fields", tuple(dict.fromkeys(self.fields)))

    def sections(self) -> tuple[bool, bool, bool, bool, bool]:
        """Whether name, hostname, timestamps, categories and fields are written."""
        return (
            "name" in self.include,
            "hostname" in self.include,
            "timestamps" in self.include,
            "categories" in self.include,
            "fields" in self.include,
        )
