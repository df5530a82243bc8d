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
from exporter.sources.nats import NatsSource, NatsSourceSettings
from exporter.sources.reports import SourceReports
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
    @property
    def nats(self) -> NatsSourceSettings | None: ...


MakeSource = Callable[[SourceBlock, Intake, TextIO | SourceReports], Source]
"""A block, the intake, and where what the source rejects and what troubles it are told."""


def _http(block: SourceBlock, intake: Intake, errors: TextIO | SourceReports) -> Source:
    assert block.http is not None
    return HttpSource(block.http, intake, errors)


def _unix(block: SourceBlock, intake: Intake, errors: TextIO | SourceReports) -> Source:
    assert block.unix is not None
    return UnixSource(block.unix, intake, errors)


def _file(block: SourceBlock, intake: Intake, errors: TextIO | SourceReports) -> Source:
    assert block.file is not None
    return TailSource(block.file, intake, errors)


def _stdin(block: SourceBlock, intake: Intake, errors: TextIO | SourceReports) -> Source:
    return StdinSource(block.name, intake, errors, block.stdin)


def _nats(block: SourceBlock, intake: Intake, errors: TextIO | SourceReports) -> Source:
    assert block.nats is not None
    dead_letters = getattr(intake, "dead_letters", None)  # the daemon's: for bad messages
    return NatsSource(block.nats, intake, errors, dead_letters)


SOURCE_TYPES: Final[dict[str, MakeSource]] = {
    "http": _http,
    "unix": _unix,
    "file": _file,
    "stdin": _stdin,
    "nats": _nats,
}


def make_source(block: SourceBlock, intake: Intake, errors: TextIO | SourceReports) -> Source:
    """The source a block describes, feeding ``intake``, reporting to ``errors`` (the
    daemon's :class:`~exporter.sources.reports.LogReports`); not running yet."""
    return SOURCE_TYPES[block.type](block, intake, errors)
