"""Reading a ``dovecot.conf`` (2.3 or 2.4 syntax, or ``doveconf -n`` output) into a tree.

Only the syntax, not Dovecot's meaning: ``key = value`` lines, ``type [name] {`` ... ``}``
sections, ``!include`` / ``!include_try`` (globs, relative to the including file), values
quoted with ``"`` or ``'``, ``<FILE`` values read from a file, a ``\\`` ending a line that
goes on on the next one, and ``#`` comments (at the start or after a blank, outside
quotes). Every node keeps where it was written (file and line), so whoever reads the tree
(:mod:`exporter.config.dovecot_import`) can say where each thing it cannot carry over is.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from exporter.errors import UsageError

MAX_INCLUDE_DEPTH = 20
"""Nested ``!include`` levels followed, at most (a file including itself stops here)."""


@dataclass(frozen=True, slots=True)
class Where:
    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True, slots=True)
class Entry:
    """``key = value``."""

    key: str
    value: str
    where: Where


@dataclass(slots=True)
class Section:
    """``type name { ... }`` (``name`` empty when not given); the file itself is the root."""

    type: str
    name: str
    where: Where
    children: list[Entry | Section] = field(default_factory=list)

    def entries(self) -> Iterator[Entry]:
        return (child for child in self.children if isinstance(child, Entry))

    def sections(self, type_: str | None = None) -> Iterator[Section]:
        return (
            child
            for child in self.children
            if isinstance(child, Section) and (type_ is None or child.type == type_)
        )


class DovecotConfError(UsageError):
    """A line that is not Dovecot configuration syntax, or an unreadable include."""


def read_dovecot_conf(path: str) -> Section:
    """The tree of ``path`` (``-``: standard input), includes followed."""
    if path == "-":
        import sys

        return parse_dovecot_conf(sys.stdin.read(), "<stdin>", Path.cwd())
    text = _read(path, None)
    return parse_dovecot_conf(text, path, Path(path).resolve().parent)


def parse_dovecot_conf(text: str, source: str, base: Path) -> Section:
    root = Section("", "", Where(source, 0))
    stack = [root]
    _parse_into(text, source, base, stack, depth=0)
    if len(stack) > 1:
        open_section = stack[-1]
        raise DovecotConfError(
            f"{open_section.where}: section '{open_section.type} {open_section.name}' "
            "is never closed (missing '}')"
        )
    return root


def _read(path: str, where: Where | None) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="surrogateescape")
    except OSError as exc:
        at = f"{where}: " if where else ""
        raise DovecotConfError(f"{at}cannot read {path}: {exc.strerror}") from None


def _logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """(first line number, text) with ``\\``-continued lines joined."""
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.split("\n"), 1):
        line = raw.rstrip(" \t\r")
        if not pending:
            start = number
        if line.endswith("\\"):
            pending.append(line[:-1])
            continue
        pending.append(line)
        yield start, " ".join(part.strip(" \t") for part in pending)
        pending = []
    if pending:
        yield start, " ".join(part.strip(" \t") for part in pending)


def _parse_into(text: str, source: str, base: Path, stack: list[Section], depth: int) -> None:
    for number, raw in _logical_lines(text):
        where = Where(source, number)
        line = _strip_comment(raw).strip(" \t")
        if not line:
            continue
        if line.startswith("!include"):
            _include(line, where, base, stack, depth)
            continue
        if line == "}":
            if len(stack) == 1:
                raise DovecotConfError(f"{where}: '}}' without a section to close")
            stack.pop()
            continue
        if line.endswith("{") and "=" not in line:
            head = line[:-1].strip(" \t")
            type_, _, name = head.partition(" ")
            if not type_:
                raise DovecotConfError(f"{where}: expecting 'TYPE [NAME] {{', got {raw.strip()!r}")
            section = Section(type_, _unquote(name.strip(" \t")), where)
            stack[-1].children.append(section)
            stack.append(section)
            continue
        key, eq, value = line.partition("=")
        key = key.strip(" \t")
        if not eq or not key or " " in key:
            raise DovecotConfError(
                f"{where}: expecting 'KEY = VALUE', 'TYPE [NAME] {{', '}}' or '!include FILE', "
                f"got {raw.strip()!r}"
            )
        value = value.strip(" \t")
        if value.startswith("<"):
            value = _read(str(base / value[1:].strip(" \t")), where).rstrip("\n")
        stack[-1].children.append(Entry(key, _unquote(value), where))


def _include(line: str, where: Where, base: Path, stack: list[Section], depth: int) -> None:
    keyword, _, target = line.partition(" ")
    if keyword not in ("!include", "!include_try"):
        raise DovecotConfError(
            f"{where}: unknown directive {keyword!r} (allowed: !include, !include_try)"
        )
    target = _unquote(target.strip(" \t"))
    if not target:
        raise DovecotConfError(f"{where}: {keyword} needs a file")
    if depth >= MAX_INCLUDE_DEPTH:
        raise DovecotConfError(f"{where}: includes nested deeper than {MAX_INCLUDE_DEPTH} levels")
    pattern = target if os.path.isabs(target) else str(base / target)
    paths = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
    for path in paths:
        if keyword == "!include_try" and not os.path.exists(path):
            continue
        text = _read(path, where)
        _parse_into(text, path, Path(path).resolve().parent, stack, depth + 1)


def _strip_comment(line: str) -> str:
    quote = ""
    for index, char in enumerate(line):
        if quote:
            if char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
        elif char == "#" and (index == 0 or line[index - 1] in " \t"):
            return line[:index]
    return line


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        inner = value[1:-1]
        return inner.replace("\\" + value[0], value[0]).replace("\\\\", "\\")
    return value
