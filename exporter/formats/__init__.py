"""Event formats: Dovecot's json and tab-text, and reading them back."""

from __future__ import annotations

from exporter.formats.jsonfmt import make_json_formatter
from exporter.formats.spec import ALL_INCLUDES, FormatSpec, Formatter, parse_fields, parse_include
from exporter.formats.tabtext import make_tabtext_formatter

__all__ = [
    "ALL_INCLUDES",
    "FormatSpec",
    "Formatter",
    "make_formatter",
    "parse_fields",
    "parse_include",
]


def make_formatter(spec: FormatSpec, *, newline: bool = False) -> Formatter:
    """The function that writes one event as ``spec`` says (``\\n`` appended if asked)."""
    if spec.format == "json":
        return make_json_formatter(spec, newline=newline)
    return make_tabtext_formatter(spec, newline=newline)
