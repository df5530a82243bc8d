"""Dovecot's event filter language with 2.4 semantics, compiled to fast matchers.

    flt = compile_filter("event=imap_command_finished AND cmd_name=select")
    if not flt.match_all and flt.matches(event.flatten()): ...

Filters match *flat* events (see :meth:`exporter.event.Event.flatten`). Every syntax
error is a :class:`~exporter.errors.FilterSyntaxError`; no input raises anything else.
"""

from __future__ import annotations

from exporter.event import Event
from exporter.filter.compile import compile_node, match_all
from exporter.filter.fields import Matcher
from exporter.filter.info import FilterInfo, filter_info
from exporter.filter.nodes import (
    And,
    Category,
    EventName,
    Field,
    Node,
    Not,
    Op,
    Or,
    SourceLocation,
)
from exporter.filter.parser import MAX_DEPTH, ParseResult, parse

__all__ = [
    "Matcher",
    "MAX_DEPTH",
    "And",
    "Category",
    "EventFilter",
    "EventName",
    "Field",
    "FilterInfo",
    "Node",
    "Not",
    "Op",
    "Or",
    "SourceLocation",
    "compile_filter",
    "parse_filter",
]


class EventFilter:
    """A compiled filter. ``matches`` is the compiled closure itself, so a hot loop that
    binds ``flt.matches`` once pays one call per event; ``match_all`` is True for the
    empty filter, so callers may skip calling it at all."""

    __slots__ = ("_parsed", "ast", "match_all", "matches", "source")

    def __init__(self, source: str, parsed: ParseResult) -> None:
        self.source = source
        self.ast = parsed.ast
        self.match_all = parsed.ast is None
        self.matches: Matcher = match_all if parsed.ast is None else compile_node(parsed.ast)
        self._parsed = parsed

    def __call__(self, event: Event) -> bool:
        return self.matches(event)

    @property
    def info(self) -> FilterInfo:
        """The event names, categories and field keys used, and any AND/OR mixing."""
        return filter_info(self._parsed)

    def __repr__(self) -> str:
        return f"EventFilter({self.source!r})"


def compile_filter(source: str) -> EventFilter:
    """Parse and compile ``source``; raise FilterSyntaxError if it is not a filter."""
    return EventFilter(source, parse(source))


def parse_filter(source: str) -> Node | None:
    """The syntax tree of ``source`` (None for an empty filter); ``str()`` of it is
    canonical source that parses back to an equal tree."""
    return parse(source).ast
