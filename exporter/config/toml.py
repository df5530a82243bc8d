"""Reading TOML tables with every problem recorded at the key's own line.

TOML's reader says what the values are, not where: :class:`KeyLines` finds each key's
line in the text, :class:`Table` reads one table with typed getters that record a
:class:`Problem` (and return the default) instead of raising, and ``finish()`` reports
the keys nobody asked for, with the nearest known one. :class:`ConfigError` is all of
them at once, one per line.
"""

from __future__ import annotations

import difflib
import math
import re
import tomllib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from exporter.errors import EventExporterError, UsageError
from exporter.secret import Secret

T = TypeVar("T")


@dataclass(frozen=True)
class Problem:
    path: str
    """Where, as a key path: ``exporter.archive.format``."""
    message: str
    line: int | None = None


class ConfigError(UsageError):
    """Everything wrong with a configuration, one problem per line."""

    def __init__(self, source: str, problems: Sequence[Problem]) -> None:
        self.source = source
        self.problems = tuple(problems)
        lines = [
            f"{source}:{p.line}: {p.path}: {p.message}"
            if p.line is not None
            else f"{source}: {p.path}: {p.message}"
            for p in self.problems
        ]
        super().__init__("\n".join(lines))


class Problems:
    """The problems found so far in one text, each placed at its key's line."""

    def __init__(self, text: str) -> None:
        self.lines = KeyLines(text)
        self.found: list[Problem] = []

    def add(self, path: str, message: str) -> None:
        self.found.append(Problem(path, message, self.lines.find(path)))

    def __len__(self) -> int:
        return len(self.found)


def load_toml(text: str, source: str) -> dict[str, Any]:
    """The TOML data of ``text``; a syntax error is a ConfigError with its line."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"\(at line (\d+)", str(exc))
        line = int(found.group(1)) if found else None
        problem = Problem("(syntax)", str(exc), line)
    except RecursionError:  # tomllib reads nested arrays and inline tables recursively
        problem = Problem("(syntax)", "arrays or inline tables nested too deep", _deep_line(text))
    except ValueError:  # an integer past Python's digit limit
        number = _LONG_NUMBER.search(text)
        line = None if number is None else text.count("\n", 0, number.start()) + 1
        problem = Problem("(syntax)", "a number with thousands of digits", line)
    raise ConfigError(source, [problem]) from None


_LONG_NUMBER = re.compile(r"[0-9_]{4000,}")
_NESTING_SHOWN = 100


def _deep_line(text: str) -> int | None:
    """The line where brackets first nest deeper than anything a configuration needs (a
    rough count, strings included: it only says where to look)."""
    depth = 0
    for line, content in enumerate(text.splitlines(), 1):
        for char in content:
            depth += char in "[{"
            depth -= char in "]}"
            if depth > _NESTING_SHOWN:
                return line
    return None


class Table:
    """One TOML table being read: typed getters that record problems and return the
    default instead of raising; ``finish()`` reports the keys nobody asked for."""

    def __init__(self, problems: Problems, path: str, data: dict[str, Any]) -> None:
        self.problems = problems
        self.path = path
        self.data = data
        self._known: set[str] = set()

    def key_path(self, key: str) -> str:
        """``key``'s path (and ``key`` is known from now on)."""
        self._known.add(key)
        return f"{self.path}.{key}" if self.path else key

    def problem(self, key: str, message: str) -> None:
        """A problem of ``key``; ``""`` for the table itself."""
        self.problems.add(self.key_path(key) if key else self.path, message)

    def _value(self, key: str, kinds: tuple[type, ...], what: str) -> Any:
        path = self.key_path(key)
        if key not in self.data:
            return None
        value = self.data[key]
        if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
            self.problems.add(path, f"must be {what}, not {toml_type(value)}")
            return None
        return value

    def table(self, key: str) -> Table:
        value = self._value(key, (dict,), "a table")
        return Table(self.problems, self.key_path(key), value or {})

    def tables(self, key: str) -> Iterator[tuple[str, Table]]:
        """The named sub-tables of ``key`` (``[exporter.NAME]``)."""
        for name, value in (self._value(key, (dict,), "a table of named blocks") or {}).items():
            path = f"{self.key_path(key)}.{name}"
            if isinstance(value, dict):
                yield name, Table(self.problems, path, value)
            else:
                self.problems.add(path, f"must be a [{path}] block, not {toml_type(value)}")

    def text(self, key: str, default: T, *, nonempty: bool = False) -> str | T:
        """A string; with ``default`` None the key is required."""
        value = self._value(key, (str,), "a string")
        if value is None:
            if default is None and key not in self.data:  # a wrong type is said already
                self.problem(key, "is required")
            return default
        if nonempty and not value.strip():
            self.problem(key, "must not be empty")
            return default
        return str(value)

    def choice(self, key: str, default: str, allowed: Sequence[str]) -> Any:
        value = self._value(key, (str,), "a string")
        if value is None:
            return default
        if value not in allowed:
            self.problem(
                key,
                f"{value!r} is not allowed (allowed: {', '.join(allowed)}){hint(value, allowed)}",
            )
            return default
        return value

    def integer(self, key: str, default: T, minimum: int) -> int | T:
        value = self._value(key, (int,), "a whole number")
        if value is None:
            return default
        if value < minimum:
            self.problem(key, f"must be at least {minimum}, not {value}")
            return default
        return int(value)

    def number(self, key: str, default: T, *, minimum: float) -> float | T:
        value = self._value(key, (int, float), "a number")
        if value is None:
            return default
        if not math.isfinite(value):
            self.problem(key, f"must be a finite number, not {value}")
            return default
        if value < minimum:
            self.problem(key, f"must be at least {minimum:g}, not {value}")
            return default
        return float(value)

    def boolean(self, key: str, default: bool) -> bool:
        value = self._value(key, (bool,), "true or false")
        return default if value is None else bool(value)

    def strings(self, key: str, default: T) -> list[str] | T:
        value = self._value(key, (list,), "a list of strings")
        if value is None:
            return default
        if not all(isinstance(item, str) for item in value):
            self.problem(key, "must be a list of strings")
            return default
        return list(value)

    def integers(self, key: str, default: T) -> list[int] | T:
        value = self._value(key, (list,), "a list of whole numbers")
        if value is None:
            return default
        if not all(isinstance(item, int) and not isinstance(item, bool) for item in value):
            self.problem(key, "must be a list of whole numbers")
            return default
        return list(value)

    def strings_table(self, key: str) -> dict[str, str]:
        value = self._value(key, (dict,), "a table of strings")
        if value is None:
            return {}
        if not all(isinstance(item, str) for item in value.values()):
            self.problem(key, "every value must be a string")
            return {}
        return dict(value)

    def whole_or_text(self, key: str, what: str) -> int | str | None:
        """A whole number or a string (a size with its unit); None when absent or neither."""
        value = self._value(key, (int, str), what)
        return None if value is None else value

    def secret(self, key: str) -> Secret | None:
        """The secret named by ``KEY_env`` (a variable) or ``KEY_file``; None for neither."""
        env = self.text(f"{key}_env", "") or None
        file = self.text(f"{key}_file", "") or None
        try:
            return Secret.load(env=env, file=file)
        except UsageError as exc:
            self.problem(f"{key}_env" if env else f"{key}_file", str(exc))
            return None

    def parse(
        self,
        key: str,
        parse: Callable[[str], T],
        *,
        allowed: str,
        default: str | None = None,
        shown: Callable[[str], str] = repr,
    ) -> T | None:
        """``parse`` of the text; a problem quotes it as ``shown`` gives it (a destination
        without its credentials)."""
        text = self.text(key, default)
        if text is None:
            return None
        try:
            return parse(text)
        except (EventExporterError, ValueError):
            self.problem(key, f"{shown(text)} is not allowed (allowed: {allowed})")
            return None

    def build(self, make: Callable[..., T], **values: Any) -> T | None:
        """``make(**values)``; its UsageError (settings that do not fit together) is a
        problem of this table."""
        try:
            return make(**values)
        except UsageError as exc:
            self.problem("", str(exc))
            return None

    def finish(self) -> None:
        known = sorted(self._known)
        for key in self.data:
            if key not in self._known:
                path = f"{self.path}.{key}" if self.path else key
                self.problems.add(path, f"unknown key{hint(key, known)}")


def named_tables(value: object) -> list[tuple[str, object]]:
    """The ``[exporter.NAME]`` blocks of a value that may be anything."""
    return (
        [(str(k), v) for k, v in value.items() if isinstance(v, dict)]
        if isinstance(value, dict)
        else []
    )


def hint(word: str, known: Sequence[str]) -> str:
    """``; did you mean 'X'?`` for the closest of ``known``, or nothing."""
    close = difflib.get_close_matches(word, list(known), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def toml_type(value: object) -> str:
    names = {bool: "a boolean", int: "a whole number", float: "a number", str: "a string"}
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    return names.get(type(value), type(value).__name__)


class KeyLines:
    """Where each key path is written: TOML's reader does not say, the text does.

    One pass, linear in the text: a line is read with ``str.find`` and single-character
    searches, never a regex that can backtrack (a long line once made ``check`` run for
    minutes). What a multi-line string holds is skipped: a line in one is not a key.
    """

    _KEY_CHARS = re.compile(r"[\w\-\"'. ]+")
    _SPECIAL = re.compile(r"[#\"']")  # outside strings: a comment or a string starts
    _BASIC_END = re.compile(r"[\\\"]")  # in a "..." or """...""" string: an escape or a quote

    def __init__(self, text: str) -> None:
        self._lines: dict[str, int] = {}
        table = ""
        inside = ""  # the delimiter of the multi-line string a line starts in ("" for none)
        for number, line in enumerate(text.splitlines(), 1):
            if not inside:
                header = _header_name(line)
                if header is not None:
                    table = _dotted(header)
                    parts = table.split(".")
                    for end in range(1, len(parts) + 1):  # [metric.x] also writes "metric"
                        self._lines.setdefault(".".join(parts[:end]), number)
                else:
                    key = self._key(line)
                    if key is not None:
                        path = f"{table}.{_dotted(key)}" if table else _dotted(key)
                        self._lines.setdefault(path, number)
            inside = self._open_at_end(line, inside)

    def find(self, path: str) -> int | None:
        """The line of ``path`` (``urls[1]``: of ``urls``), else of the nearest enclosing
        table that is written."""
        if path.endswith("]"):
            path = path.rpartition("[")[0]
        while path:
            if path in self._lines:
                return self._lines[path]
            path = path.rpartition(".")[0]
        return None

    @classmethod
    def _key(cls, line: str) -> str | None:
        """``name`` of a line ``name = ...`` (bare, quoted or dotted), else None."""
        text = line.lstrip()
        equals = text.find("=")
        if equals <= 0 or text.startswith("#"):
            return None
        key = text[:equals].rstrip()
        return key if cls._KEY_CHARS.fullmatch(key) else None

    @classmethod
    def _open_at_end(cls, line: str, inside: str) -> str:
        """The multi-line string (its delimiter) still open where ``line`` ends, given the
        one open where it starts."""
        at, size = 0, len(line)
        while at < size:
            if inside:  # find its end: a quote not escaped (a literal string has no escapes)
                if inside == '"""':
                    found = cls._BASIC_END.search(line, at)
                    at = found.start() if found else -1
                else:
                    at = line.find("'", at)
                if at < 0:
                    return inside
                if line[at] == "\\":
                    at += 2
                elif line.startswith(inside, at):
                    at += 3
                    while at < size and line[at] == inside[0]:  # """a""""": up to 2 more
                        at += 1
                    inside = ""
                else:
                    at += 1
                continue
            special = cls._SPECIAL.search(line, at)
            if special is None or special.group() == "#":
                return ""
            at = special.start()
            quote = line[at]
            if line.startswith(quote * 3, at):
                inside, at = quote * 3, at + 3
                continue
            at = cls._one_line_string_end(line, at + 1, quote)
        return inside

    @classmethod
    def _one_line_string_end(cls, line: str, at: int, quote: str) -> int:
        """Where a one-line string that starts before ``at`` ends (past its quote)."""
        while True:
            if quote == "'":
                end = line.find("'", at)
                return len(line) if end < 0 else end + 1
            found = cls._BASIC_END.search(line, at)
            if found is None:
                return len(line)
            if found.group() == '"':
                return found.end()
            at = found.end() + 1  # an escape: skip the character it escapes


def _header_name(line: str) -> str | None:
    """``a.b`` of a ``[a.b]`` or ``[[a.b]]`` line (a comment may follow), else None."""
    text = line.strip()
    if not text.startswith("["):
        return None
    body = text[2:] if text.startswith("[[") else text[1:]
    end = body.find("]")
    if end < 0:
        return None
    rest = body[end + 1 :].removeprefix("]").strip()
    name = body[:end].strip()
    return name if name and (not rest or rest.startswith("#")) else None


def _dotted(key: str) -> str:
    return ".".join(part.strip().strip("\"'") for part in key.split("."))
