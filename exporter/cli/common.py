"""What the commands share: exit codes (and the words ``--help`` says about them), option
checking, opening inputs, messages on stderr."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from dataclasses import replace
from typing import BinaryIO, Final

from exporter.config.settings import METRIC, WRITING, format_spec, option_values
from exporter.errors import FilterSyntaxError, UsageError
from exporter.filter import EventFilter, compile_filter
from exporter.formats import FormatSpec
from exporter.observe.text import printable

EXIT_OK: Final = 0
EXIT_REJECTED: Final = 1
EXIT_USAGE: Final = 2
EXIT_LOSS: Final = 3
EXIT_BROKEN_PIPE: Final = 141  # 128 + SIGPIPE, as a filter killed by SIGPIPE reports

MESSAGE_MAX: Final = 2000
"""Characters of one line of a message kept (a line quoting a file name, a bad value)."""


def exit_statuses(*meanings: tuple[int, str]) -> str:
    """A command's ``--help`` epilog: every status it can exit with, and what each means
    (a usage error, 2, is every command's: argparse's own included)."""
    return "exit status: " + "; ".join(f"{status} {meaning}" for status, meaning in meanings)


def format_and_filter(args: argparse.Namespace) -> tuple[FormatSpec, EventFilter]:
    """The format spec and compiled filter the export options ask for (UsageError if bad)."""
    values = option_values(args, (*WRITING, *METRIC))
    spec = replace(format_spec(values), include=values["include"], fields=values["fields"])
    try:
        return spec, compile_filter(values["filter"])
    except FilterSyntaxError as exc:
        raise UsageError(f"--filter: {exc}\n{exc.caret()}") from None


def open_sources(paths: list[str], stack: contextlib.ExitStack) -> list[tuple[str, BinaryIO]]:
    """The input streams, stdin for none or ``-``; UsageError names an unreadable file."""
    sources: list[tuple[str, BinaryIO]] = []
    for path in paths:
        if path == "-":
            sources.append(("<stdin>", sys.stdin.buffer))
            continue
        try:
            sources.append((path, stack.enter_context(open(path, "rb"))))  # noqa: SIM115 - closed by the caller's stack
        except OSError as exc:
            raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    return sources or [("<stdin>", sys.stdin.buffer)]


def say(message: str) -> None:
    """``event-exporter: MESSAGE`` on stderr, each line's control characters and invalid
    bytes (a file name's, a value's) escaped, so that no message prints a surrogate or
    moves the terminal's cursor."""
    sys.stderr.write(f"event-exporter: {escaped(message)}\n")


def escaped(message: str) -> str:
    """``message`` made printable line by line (its own line breaks kept)."""
    return "\n".join(printable(line, MESSAGE_MAX) for line in message.split("\n"))


def usage_error(message: str) -> int:
    say(message)
    return EXIT_USAGE


def write_stdout(text: str) -> None:
    """Write all of ``text`` to stdout and flush it; BrokenPipeError when its reader went
    away. (A write that the pipe's closing cuts short returns a short count and no error,
    and the text layer ignores that count: the rest is written here, which fails.)"""
    data = memoryview(text.encode("utf-8", "surrogateescape"))
    sys.stdout.flush()
    out = sys.stdout.buffer
    while data:
        data = data[out.write(data) :]
    out.flush()


def stdout_closed() -> int:
    """The reader of stdout went away (``| head``): stop quietly with the status of a
    process killed by SIGPIPE, as other filters do (what is still buffered goes nowhere,
    so Python's exit does not complain of it)."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return EXIT_BROKEN_PIPE


def same_file(a: str, b: str) -> bool:
    """Whether paths ``a`` and ``b`` name one file (``-``, standard input or output, never
    does); paths that do not exist compare by their absolute form."""
    if "-" in (a, b):
        return False
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)
