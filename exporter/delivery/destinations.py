"""``--to DEST``: which driver a destination names.

file:PATH          append to a file (reopened when rotated)
unix:PATH          a unix stream socket, one event per line
unix-dgram:PATH    a unix datagram socket, one event per datagram
log:stderr         one line per event on stderr (or log:stdout)
drop               encode, then discard
http://... https://...  POST batches (see drivers.http)
nats://HOST:PORT[,...]  publish to NATS JetStream (see drivers.nats)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from drivers.base import Driver
from exporter.errors import UsageError
from exporter.observe.text import printable

if TYPE_CHECKING:
    from drivers.file import FileSettings
    from drivers.http import HttpSettings
    from drivers.nats import NatsSettings

T = TypeVar("T")

SCHEMES = (
    "file:PATH",
    "unix:PATH",
    "unix-dgram:PATH",
    "log:stderr",
    "log:stdout",
    "drop",
    "http://HOST[:PORT]/PATH",
    "https://...",
    "nats://HOST:PORT[,HOST:PORT...]",
)


@dataclass(frozen=True, slots=True)
class Destination:
    kind: str
    target: str

    @property
    def is_log(self) -> bool:
        return self.kind == "log"

    @property
    def is_http(self) -> bool:
        return self.kind == "http"

    @property
    def is_nats(self) -> bool:
        return self.kind == "nats"

    def open(self, settings: FileSettings | HttpSettings | NatsSettings | None = None) -> Driver:
        """A new driver for this destination, made with its driver's own settings (None:
        their defaults); connections and files open lazily."""
        if self.kind == "http":
            from drivers.http import HttpDriver, HttpSettings

            return HttpDriver(self._own(settings, HttpSettings) or HttpSettings(self.target))
        if self.kind == "nats":
            from drivers.nats import NatsConnection, NatsDriver, NatsSettings, parse_servers

            nats = self._own(settings, NatsSettings) or NatsSettings(
                NatsConnection(parse_servers(self.target))
            )
            return NatsDriver(nats)
        if self.kind == "file":
            from drivers.file import FileDriver, FileSettings

            file = self._own(settings, FileSettings) or FileSettings()
            return FileDriver(self.target, mode=file.mode, fsync=file.fsync)
        self._own(settings, type(None))
        if self.kind in ("unix", "unix-dgram"):
            from drivers.unix import UnixDriver

            return UnixDriver(self.target, datagram=self.kind == "unix-dgram")
        if self.kind == "log":
            from drivers.log import LogDriver

            return LogDriver(self.target)  # type: ignore[arg-type]
        from drivers.drop import DropDriver

        return DropDriver()

    def _own(self, settings: object, kind: type[T]) -> T | None:
        """``settings`` if they are of this destination's driver (or None); else TypeError."""
        if settings is None or isinstance(settings, kind):
            return settings
        raise TypeError(f"{self.kind} destinations take no {type(settings).__name__}")


def parse_destination(text: str) -> Destination:
    """``file:/var/log/events.ndjson`` -> Destination("file", "/var/log/events.ndjson").

    Kinds and URL schemes are case-insensitive (``HTTP://`` is http); a message never
    repeats a URL's credentials or query (see :func:`printable_destination`)."""
    if text.lower() == "drop":
        return Destination("drop", "")
    kind, sep, target = text.partition(":")
    kind = kind.lower()
    if sep and kind in ("http", "https") and target.startswith("//"):
        return Destination("http", text)
    if sep and kind in ("nats", "tls") and target.startswith("//"):
        from drivers.nats import parse_servers

        parse_servers(text)  # UsageError says what is wrong
        return Destination("nats", text)
    if sep and kind in ("file", "unix", "unix-dgram") and target:
        return Destination(kind, target)
    if sep and kind == "log" and target in ("stderr", "stdout"):
        return Destination(kind, target)
    raise UsageError(
        f"unknown destination {printable_destination(text)} (allowed: {', '.join(SCHEMES)})"
    )


_USERINFO = re.compile(r"(?<=//)[^/?#]*@")  # the credentials of scheme://user:password@host


def printable_destination(text: str) -> str:
    """``text`` quoted as a message may show it: without what may be a secret (a URL's
    ``user:password@``, its query), control characters escaped, its length capped."""
    shown = _USERINFO.sub("***@", text, count=1)
    base, question, _ = shown.partition("?")
    return f"'{printable(base + ('?***' if question else ''))}'"
