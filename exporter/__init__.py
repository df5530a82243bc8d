"""event-exporter: select, format and ship Dovecot and Stalwart events.

The in-process API: build :class:`Event` objects, write them with :func:`make_formatter`,
read Dovecot's json / tab-text back with :func:`read_event`.
"""

from __future__ import annotations

import importlib.metadata

from exporter.errors import (
    EventExporterError,
    EventFormatError,
    EventParseError,
    FilterSyntaxError,
    UsageError,
)
from exporter.event import Category, Event, FieldValue, Timestamp
from exporter.formats import FormatSpec, Formatter, make_formatter
from exporter.formats.reader import read_event


def _installed_version() -> str:
    try:
        return importlib.metadata.version("event-exporter")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout, not installed
        return "0+unknown"


__version__ = _installed_version()

__all__ = [
    "Category",
    "Event",
    "EventExporterError",
    "EventFormatError",
    "EventParseError",
    "FieldValue",
    "FilterSyntaxError",
    "FormatSpec",
    "Formatter",
    "Timestamp",
    "UsageError",
    "__version__",
    "make_formatter",
    "read_event",
]
