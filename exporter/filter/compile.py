"""Compiling a syntax tree into nested closures, each specialized for its comparison.

Everything that can be decided once is decided here: literal or wildcard, log type or
category, which field predicate. ``event=literal`` ends up as one attribute load and one
string comparison. No ``eval``/``exec``; a long run of AND/OR is one loop, not a tower of
closures, so only real nesting (capped by the parser) costs stack depth.
"""

from __future__ import annotations

from typing import Final, assert_never

from exporter.event import Event
from exporter.filter.fields import Matcher, compile_field
from exporter.filter.nodes import And, Category, EventName, Field, Node, Not, Or, SourceLocation
from exporter.filter.wildcard import compile_wildcard, is_escaped_literal, unescape

#: ``category=`` values that test the log type the event was sent with.
LOG_TYPES: Final = frozenset({"debug", "info", "warning", "error", "fatal", "panic"})


def compile_node(node: Node) -> Matcher:
    """A function telling whether an (already flattened) event matches ``node``."""
    match node:
        case And(operands):
            return _all(tuple(map(compile_node, operands)))
        case Or(operands):
            return _any(tuple(map(compile_node, operands)))
        case Not(operand):
            inner = compile_node(operand)
            return lambda event: not inner(event)
        case EventName(value):
            return _event_name(value)
        case Category(value):
            return _category(value)
        case SourceLocation(value):
            return _source_location(unescape(value))
        case Field():
            return compile_field(node)
        case _:
            assert_never(node)


def match_all(event: Event) -> bool:
    """The empty filter's matcher."""
    return True


def _all(matchers: tuple[Matcher, ...]) -> Matcher:
    if len(matchers) == 2:
        first, second = matchers
        return lambda event: first(event) and second(event)

    def match(event: Event) -> bool:
        for matcher in matchers:  # noqa: SIM110 - a plain loop beats all() on a generator
            if not matcher(event):
                return False
        return True

    return match


def _any(matchers: tuple[Matcher, ...]) -> Matcher:
    if len(matchers) == 2:
        first, second = matchers
        return lambda event: first(event) or second(event)

    def match(event: Event) -> bool:
        for matcher in matchers:  # noqa: SIM110 - a plain loop beats any() on a generator
            if matcher(event):
                return True
        return False

    return match


def _event_name(value: str) -> Matcher:
    """Case-sensitive, like Dovecot's ``strcmp``/``wildcard_match_escaped``."""
    if is_escaped_literal(value):
        name = unescape(value)
        return lambda event: event.name == name
    fullmatch = compile_wildcard(value, ignore_case=False)

    def match(event: Event) -> bool:
        name = event.name
        return name is not None and fullmatch(name) is not None

    return match


def _category(value: str) -> Matcher:
    """A log type is checked on the raw value (as Dovecot does), a category unescaped.

    Events are flat: ``categories`` already holds every ancestor category's name.
    """
    if value in LOG_TYPES:
        return lambda event: event.log_type == value
    name = unescape(value)
    return lambda event: name in event.categories


def _source_location(wanted: str) -> Matcher:
    """2.4: with a ``:`` the value must equal ``file:line``; without, the file alone."""
    if ":" not in wanted:
        return lambda event: event.source_file == wanted

    def match(event: Event) -> bool:
        return event.source_file is not None and (
            f"{event.source_file}:{event.source_line}" == wanted
        )

    return match
