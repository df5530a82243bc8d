"""Dovecot's filter grammar (``event-filter-parser.y``) as a recursive-descent parser.

    filter := ε | expr
    expr   := unary ((AND | OR) unary)*       AND and OR: same precedence, left to right
    unary  := NOT unary | "(" expr ")" | key op value
    key    := WORD | STRING                   op := = | > | < | > = | < =
    value  := WORD | STRING | AND | OR | NOT  (a keyword value is its lower-case word)

So ``a OR b AND c`` is ``(a OR b) AND c``, as in Dovecot (bison ``%left AND OR``). Every
error is a :class:`FilterSyntaxError` at the offending token, listing in words what would
have been accepted there. Nesting is capped so no input can exhaust Python's stack.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final, NoReturn

from exporter.errors import FilterSyntaxError
from exporter.filter.lexer import Kind, Token, tokenize
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
from exporter.filter.wildcard import unescape

MAX_DEPTH: Final = 100

TERM: Final = ("a field name", "NOT", "'('")
TERM_OR_END: Final = (*TERM, "end of input")
OPERATOR: Final = ("'='", "'>'", "'<'")
VALUE: Final = ("a value",)
EQ_OR_VALUE: Final = ("'='", "a value")
AFTER_FILTER: Final = ("AND", "OR", "end of input")
AFTER_GROUP: Final = ("AND", "OR", "')'")
ONLY_FIELDS: Final = "Only fields support inequality comparisons"

_SPECIAL_NODES: Final[dict[str, Callable[[str], Node]]] = {
    "event": EventName,
    "category": Category,
    "source_location": SourceLocation,
}
_KEYWORD_KINDS: Final = frozenset({Kind.AND, Kind.OR, Kind.NOT})
_VALUE_KINDS: Final = _KEYWORD_KINDS | {Kind.WORD, Kind.STRING}


@dataclass(frozen=True, slots=True)
class ParseResult:
    """The tree (None for an empty filter) and where AND and OR first mix at one level.

    ``mixed_and_or_at`` is the offset of the first AND/OR that follows the other operator
    with no parentheses in between, as in ``a OR b AND c``; None if there is none.
    """

    ast: Node | None
    mixed_and_or_at: int | None


def parse(source: str) -> ParseResult:
    """Parse ``source``; raise :class:`FilterSyntaxError` if it is not a filter."""
    return _Parser(source).parse()


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source
        self._tokens: Iterator[Token] = tokenize(source)
        self.token = next(self._tokens)
        self.mixed_at: int | None = None

    def parse(self) -> ParseResult:
        if self.token.kind is Kind.END:
            return ParseResult(None, None)
        node, _ = self._expr(0, TERM_OR_END)
        self._expect_end()
        return ParseResult(node, self.mixed_at)

    def _expect_end(self) -> None:
        if self.token.kind is not Kind.END:
            self._unexpected(AFTER_FILTER)

    def _advance(self) -> None:
        self.token = next(self._tokens)

    def _expr(self, depth: int, expected: tuple[str, ...]) -> tuple[Node, int]:
        """A run of unaries joined by AND/OR, grouped left to right; and its height."""
        first, height = self._unary(depth, expected)
        operands, heights = [first], [height]
        joiner: Kind | None = None
        while self.token.kind is Kind.AND or self.token.kind is Kind.OR:
            if joiner is not None and self.token.kind is not joiner:
                if self.mixed_at is None:
                    self.mixed_at = self.token.pos
                operands = [_join(joiner, operands)]
                heights = [self._checked(1 + max(heights))]
            joiner = self.token.kind
            self._advance()
            operand, height = self._unary(depth, TERM)
            operands.append(operand)
            heights.append(height)
        if joiner is None:
            return first, height
        return _join(joiner, operands), self._checked(1 + max(heights))

    def _unary(self, depth: int, expected: tuple[str, ...]) -> tuple[Node, int]:
        if depth > MAX_DEPTH:
            self._too_deep()
        kind = self.token.kind
        if kind is Kind.NOT:
            self._advance()
            operand, height = self._unary(depth + 1, TERM)
            return Not(operand), self._checked(height + 1)
        if kind is Kind.LPAREN:
            self._advance()
            node, height = self._expr(depth + 1, TERM)
            if self.token.kind is not Kind.RPAREN:
                self._unexpected(AFTER_GROUP)
            self._advance()
            return node, height
        if kind is Kind.WORD or kind is Kind.STRING:
            return self._comparison(), 1
        self._unexpected(expected)

    def _comparison(self) -> Node:
        key_token = self.token
        key = key_token.text if key_token.kind is Kind.WORD else unescape(key_token.text)
        self._advance()
        op_position = self.token.pos
        op, value_expected = self._operator()
        value = self.token
        if value.kind not in _VALUE_KINDS:
            self._unexpected(value_expected)
        raw = value.text.lower() if value.kind in _KEYWORD_KINDS else value.text
        self._advance()
        special = _SPECIAL_NODES.get(key)
        if special is None:
            return Field(key, op, raw)
        if op is not Op.EQ:
            raise FilterSyntaxError(self.source, op_position, ONLY_FIELDS, ("'='",))
        return special(raw)

    def _operator(self) -> tuple[Op, tuple[str, ...]]:
        """The operator, and what the value position accepts. ``> =`` is ``>=``."""
        first = self.token.kind
        if first is not Kind.EQ and first is not Kind.LT and first is not Kind.GT:
            self._unexpected(OPERATOR)
        self._advance()
        if first is Kind.EQ:
            return Op.EQ, VALUE
        if self.token.kind is Kind.EQ:
            self._advance()
            return (Op.LE if first is Kind.LT else Op.GE), VALUE
        return (Op.LT if first is Kind.LT else Op.GT), EQ_OR_VALUE

    def _checked(self, height: int) -> int:
        if height > MAX_DEPTH:
            self._too_deep()
        return height

    def _too_deep(self) -> NoReturn:
        problem = f"filter nests more than {MAX_DEPTH} levels deep"
        raise FilterSyntaxError(self.source, self.token.pos, problem, ())

    def _unexpected(self, expected: tuple[str, ...]) -> NoReturn:
        token = self.token
        if token.kind is Kind.UNTERMINATED:
            raise FilterSyntaxError(self.source, token.pos, "unterminated string", ("'\"'",))
        raise FilterSyntaxError(self.source, token.pos, _describe(token), expected)


def _join(joiner: Kind, operands: list[Node]) -> Node:
    return And(tuple(operands)) if joiner is Kind.AND else Or(tuple(operands))


def _describe(token: Token) -> str:
    if token.kind is Kind.WORD:
        return f"unexpected word '{_clip(token.text)}'"
    if token.kind is Kind.STRING:
        return f'unexpected string "{_clip(token.text)}"'
    if token.kind is Kind.BAD_CHAR:
        return f"unexpected character {token.text!r}"
    return f"unexpected {token.kind.value}"


def _clip(text: str) -> str:
    return text if len(text) <= 30 else text[:27] + "..."
