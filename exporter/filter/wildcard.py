"""Dovecot 2.4 escapes and wildcards: ``str_unescape`` and ``wildcard_match_escaped``.

Values keep their backslashes until we know what they are. A value whose every ``*`` and
``?`` is escaped is a literal and gets unescaped (``\\x`` becomes ``x``). Otherwise it is a
wildcard mask, where only ``\\*``, ``\\?`` and ``\\\\`` are escapes and any other backslash
is itself a literal character, exactly as Dovecot's matcher treats it.

A mask compiles to a regular expression so the C regex engine does the matching. Every
segment between two stars sits in an atomic group: in glob matching, taking the leftmost
occurrence of a fixed-length segment is always safe, and forbidding backtracking into it
keeps masks like ``*a*a*a*b`` linear instead of exponential on long values.
"""

from __future__ import annotations

import re
from collections.abc import Callable

#: What a compiled mask is: ``re.Pattern.fullmatch``, truthy when the value matches.
WildcardMatcher = Callable[[str], re.Match[str] | None]

_UNESCAPE = re.compile(r"\\(.?)", re.DOTALL)
_MASK_ESCAPES = frozenset("*?\\")


def unescape(text: str) -> str:
    """Drop each escaping backslash: ``\\x`` becomes ``x``; a trailing lone one goes."""
    if "\\" not in text:
        return text
    return _UNESCAPE.sub(r"\1", text)


def is_escaped_literal(mask: str) -> bool:
    """True if ``mask`` has no unescaped ``*`` or ``?``, so it compares as a literal."""
    i, end = 0, len(mask)
    while i < end:
        char = mask[i]
        if char == "\\":
            i += 2
            continue
        if char == "*" or char == "?":
            return False
        i += 1
    return True


def compile_wildcard(mask: str, *, ignore_case: bool) -> WildcardMatcher:
    """A function telling whether a whole value matches ``mask``.

    ``*`` matches any run (including none), ``?`` exactly one character. With
    ``ignore_case`` only ASCII letters fold, as Dovecot's ``i_toupper`` does.
    """
    segments = _segments(mask)
    if len(segments) == 1:
        pattern = segments[0]
    else:
        first, *middle, last = segments
        atomic = "".join(f"(?>.*?{segment})" for segment in middle if segment)
        pattern = f"{first}{atomic}.*{last}"
    flags = re.DOTALL | (re.IGNORECASE | re.ASCII if ignore_case else 0)
    return re.compile(pattern, flags).fullmatch


def _segments(mask: str) -> list[str]:
    """The regex for each part of ``mask`` between unescaped stars."""
    segments: list[list[str]] = [[]]
    i, end = 0, len(mask)
    while i < end:
        char = mask[i]
        if char == "\\" and i + 1 < end and mask[i + 1] in _MASK_ESCAPES:
            segments[-1].append(re.escape(mask[i + 1]))
            i += 2
            continue
        if char == "*":
            segments.append([])
        elif char == "?":
            segments[-1].append(".")
        else:
            segments[-1].append(re.escape(char))
        i += 1
    return ["".join(parts) for parts in segments]
