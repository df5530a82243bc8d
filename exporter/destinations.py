"""``--to DEST``: which driver a destination names.

file:PATH          append to a file (reopened when rotated)
unix:PATH          a unix stream socket, one event per line
unix-dgram:PATH    a unix datagram socket, one event per datagram
log:stderr         one line per event on stderr (or log:stdout)
drop               encode, then discard
http://... https://...  POST batches (see drivers.http)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from drivers.base import Driver
from exporter.errors import UsageError

if TYPE_CHECKING:
    from drivers.http import HttpSettings

SCHEMES = (
    "file:PATH",
    "unix:PATH",
    "unix-dgram:PATH",
    "log:stderr",
    "log:stdout",
    "drop",
    "http://HOST[:PORT]/PATH",
    "https://...",
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

    def open(
        self, *, file_mode: int = 0o600, fsync: str = "none", http: HttpSettings | None = None
    ) -> Driver:
        """A new driver for this destination (connections and files open lazily)."""
        if self.kind == "http":
            from drivers.http import HttpDriver, HttpSettings

            return HttpDriver(http or HttpSettings(url=self.target))
        if self.kind == "file":
            from drivers.file import FileDriver

            return FileDriver(self.target, mode=file_mode, fsync=fsync)  # type: ignore[arg-type]
        if self.kind in ("unix", "unix-dgram"):
            from drivers.unix import UnixDriver

            return UnixDriver(self.target, datagram=self.kind == "unix-dgram")
        if self.kind == "log":
            from drivers.log import LogDriver

            return LogDriver(self.target)  # type: ignore[arg-type]
        from drivers.drop import DropDriver

        return DropDriver()


def parse_destination(text: str) -> Destination:
    """``file:/var/log/events.ndjson`` -> Destination("file", "/var/log/events.ndjson")."""
    if text == "drop":
        return Destination("drop", "")
    if text.startswith(("http://", "https://")):
        return Destination("http", text)
    kind, sep, target = text.partition(":")
    if sep and kind in ("file", "unix", "unix-dgram") and target:
        return Destination(kind, target)
    if sep and kind == "log" and target in ("stderr", "stdout"):
        return Destination(kind, target)
    raise UsageError(f"unknown destination {text!r} (allowed: {', '.join(SCHEMES)})")
