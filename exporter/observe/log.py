"""The daemon's own log: one line per message on stderr, from its ``log_level`` up."""

from __future__ import annotations

import sys

from exporter.config import LOG_LEVELS


class Log:
    """The daemon's own messages on stderr, from ``level`` up (the final summary and
    errors that stop it are always written)."""

    def __init__(self, level: str = "info") -> None:
        self.level = LOG_LEVELS.index(level)

    def _write(self, level: str, message: str) -> None:
        if LOG_LEVELS.index(level) >= self.level:
            sys.stderr.write(f"event-exporter: {message}\n")

    def debug(self, message: str) -> None:
        self._write("debug", message)

    def info(self, message: str) -> None:
        self._write("info", message)

    def warning(self, message: str) -> None:
        self._write("warning", message)

    def error(self, message: str) -> None:
        sys.stderr.write(f"event-exporter: {message}\n")

    def exporter_warning(self, name: str, message: str) -> None:
        self.warning(f"{name}: {message}")
