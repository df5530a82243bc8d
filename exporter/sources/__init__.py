"""Where events come from: an HTTP listener (Dovecot http-post, NDJSON, Stalwart
webhooks) and line streams (a unix socket, a followed file, stdin).

Every source hands its events to one :class:`~exporter.sources.intake.Intake`, and
every source is started the same way: :data:`SOURCE_TYPES` says, for a ``[source.NAME]``
block's type, how to make it; then ``serve()`` runs it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, Protocol, TextIO

import anyio.abc

from exporter.sources.http import HttpSource, HttpSourceSettings
from exporter.sources.intake import Intake
from exporter.sources.stdin import StdinSource, StdinSourceSettings
from exporter.sources.tail import TailSource, TailSourceSettings
from exporter.sources.unix import UnixSource, UnixSourceSettings


class Source(Protocol):
    async def serve(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        """Run until cancelled, or until the input ends (stdin); started once it takes
        events."""

    def announce(self) -> str | None:
        """What the daemon's log says once it runs (None: nothing)."""


class SourceBlock(Protocol):
    """What a ``[source.NAME]`` block gives (:class:`exporter.config.SourceConfig`, which
    is not imported here: the configuration imports the settings classes above)."""

    @property
    def name(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def http(self) -> HttpSourceSettings | None: ...
    @property
    def unix(self) -> UnixSourceSettings | None: ...
    @property
    def file(self) -> TailSourceSettings | None: ...
    @property
    def stdin(self) -> StdinSourceSettings | None: ...


Report = Callable[[str], None]
MakeSource = Callable[[SourceBlock, Intake, TextIO, Report], Source]
"""A block, the intake, where rejected lines go, and where trouble on a listener goes."""


def _http(block: SourceBlock, intake: Intake, errors: TextIO, report: Report) -> Source:
    assert block.http is not None
    return HttpSource(block.http, intake, report=report)


def _unix(block: SourceBlock, intake: Intake, errors: TextIO, report: Report) -> Source:
    assert block.unix is not None
    return UnixSource(block.unix, intake, errors)


def _file(block: SourceBlock, intake: Intake, errors: TextIO, report: Report) -> Source:
    assert block.file is not None
    return TailSource(block.file, intake, errors)


def _stdin(block: SourceBlock, intake: Intake, errors: TextIO, report: Report) -> Source:
    return StdinSource(block.name, intake, errors, block.stdin)


SOURCE_TYPES: Final[dict[str, MakeSource]] = {
    "http": _http,
    "unix": _unix,
    "file": _file,
    "stdin": _stdin,
}


def make_source(block: SourceBlock, intake: Intake, errors: TextIO, report: Report) -> Source:
    """The source a block describes, feeding ``intake``; not running yet."""
    return SOURCE_TYPES[block.type](block, intake, errors, report)
