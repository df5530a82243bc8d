"""What a filter refers to, for diagnostics such as a ``check`` command."""

from __future__ import annotations

from dataclasses import dataclass

from exporter.filter.nodes import And, Category, EventName, Field, Node, Not, Or
from exporter.filter.parser import ParseResult
from exporter.filter.wildcard import is_escaped_literal, unescape


@dataclass(frozen=True, slots=True)
class FilterInfo:
    """Names in order of first appearance, each once.

    ``event_names`` holds literal names unescaped and wildcard masks as written;
    ``categories`` includes log types such as ``debug``; ``fields`` are field keys, and
    ``comparisons`` every field comparison (each distinct one once).
    ``mixed_and_or_at`` is the offset of the first AND/OR that mixes the two operators at
    one level without parentheses (``a OR b AND c`` means ``(a OR b) AND c`` in Dovecot,
    which surprises people), or None.
    """

    event_names: tuple[str, ...]
    categories: tuple[str, ...]
    fields: tuple[str, ...]
    mixed_and_or_at: int | None
    comparisons: tuple[Field, ...] = ()


def filter_info(result: ParseResult) -> FilterInfo:
    names: dict[str, None] = {}
    categories: dict[str, None] = {}
    fields: dict[str, None] = {}
    comparisons: dict[Field, None] = {}
    pending: list[Node] = [] if result.ast is None else [result.ast]
    while pending:  # depth-first, left to right, without recursion
        node = pending.pop()
        if isinstance(node, And | Or):
            pending.extend(reversed(node.operands))
        elif isinstance(node, Not):
            pending.append(node.operand)
        elif isinstance(node, EventName):
            literal = is_escaped_literal(node.value)
            names[unescape(node.value) if literal else node.value] = None
        elif isinstance(node, Category):
            categories[unescape(node.value)] = None
        elif isinstance(node, Field):
            fields[node.key] = None
            comparisons[node] = None
    return FilterInfo(
        tuple(names), tuple(categories), tuple(fields), result.mixed_and_or_at, tuple(comparisons)
    )
