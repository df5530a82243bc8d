"""What the commands share: exit codes, option checking, opening inputs."""

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

EXIT_OK: Final = 0
EXIT_REJECTED: Final = 1
EXIT_USAGE: Final = 2
EXIT_LOSS: Final = 3
EXIT_BROKEN_PIPE: Final = 141  # 128 + SIGPIPE, as a filter killed by SIGPIPE reports


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


def usage_error(message: str) -> int:
    sys.stderr.write(f"event-exporter: {message}\n")
    return EXIT_USAGE


def same_file(a: str, b: str) -> bool:
    """Whether paths ``a`` and ``b`` name one file (``-``, standard input or output, never
    does); paths that do not exist compare by their absolute form."""
    if "-" in (a, b):
        return False
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)
