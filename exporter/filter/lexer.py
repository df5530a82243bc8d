"""Tokens of Dovecot 2.4's filter language (``event-filter-lexer.l``).

Tokens come lazily, so a bad character after a syntax error is never reported before it,
just as with flex feeding bison. A bad character or an unterminated string becomes a token
of its own; the parser turns it into a :class:`FilterSyntaxError` with context.

Strings keep their escapes raw. One flex quirk is kept: a backslash before a newline
matches no string rule, so flex's default action drops it and the newline stays.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum

from exporter.filter.nodes import BARE_WORD


class Kind(Enum):
    WORD = "word"
    STRING = "string"
    AND = "AND"
    OR = "OR"
    NOT = "NOT"
    LPAREN = "'('"
    RPAREN = "')'"
    EQ = "'='"
    LT = "'<'"
    GT = "'>'"
    END = "end of input"
    BAD_CHAR = "character"
    UNTERMINATED = "unterminated string"


@dataclass(frozen=True, slots=True)
class Token:
    """``text`` is the word, the raw string body, the keyword as written, or the char."""

    kind: Kind
    text: str
    pos: int


_SPACE = " \t\r\n"
_STRING_BODY = re.compile(r'((?:[^\\"]|\\[\s\S])*)"')
_ESCAPE_PAIR = re.compile(r"\\([\s\S])")
_PUNCTUATION = {"(": Kind.LPAREN, ")": Kind.RPAREN, "=": Kind.EQ, "<": Kind.LT, ">": Kind.GT}
_KEYWORD_KINDS = {"and": Kind.AND, "or": Kind.OR, "not": Kind.NOT}


def tokenize(source: str) -> Iterator[Token]:
    """Yield the tokens of ``source``, ending with one END token (or a bad one)."""
    pos = 0
    while True:
        while pos < len(source) and source[pos] in _SPACE:
            pos += 1
        if pos == len(source):
            yield Token(Kind.END, "", pos)
            return
        char = source[pos]
        if char in _PUNCTUATION:
            yield Token(_PUNCTUATION[char], char, pos)
            pos += 1
        elif char == '"':
            body = _STRING_BODY.match(source, pos + 1)
            if body is None:
                yield Token(Kind.UNTERMINATED, source[pos:], pos)
                return
            yield Token(Kind.STRING, _drop_backslash_newline(body[1]), pos)
            pos = body.end()
        elif (word := BARE_WORD.match(source, pos)) is not None:
            text = word[0]
            yield Token(_KEYWORD_KINDS.get(text.lower(), Kind.WORD), text, pos)
            pos = word.end()
        else:
            yield Token(Kind.BAD_CHAR, char, pos)
            return


def _drop_backslash_newline(body: str) -> str:
    if "\\\n" not in body:
        return body
    return _ESCAPE_PAIR.sub(lambda pair: pair[1] if pair[1] == "\n" else pair[0], body)
