"""The ``nats`` source: events from a NATS JetStream stream, on a durable pull consumer.

``[source.NAME] type = "nats"``: ``servers``, ``stream``, ``consumer`` (a durable pull
consumer, created with ``ack_wait``, ``max_deliver``, ``max_ack_pending`` and the
``subject`` filter when it is missing; one that exists is used as it is). Several daemons
on one consumer share its messages: the server hands each message to one of them.

End-to-end acknowledgement: a message is acked only once its event is delivered,
dead-lettered or dropped by every exporter it went to, or committed to a spool
(:class:`~exporter.sources.intake.Settles`). Until then it is pending on the server, which
hands out at most ``max_ack_pending`` unacked messages to the consumer (backpressure: a
slow collector slows the fetches); the source tells the server it is still at work on
them (``+WPI``) every third of ``ack_wait``, so a live daemon keeps its messages, while
those of a daemon that died are handed to another after ``ack_wait``. So an aggregator
killed with events taken but not delivered loses nothing: another delivers them (a
message is delivered at least once: those a killed daemon had delivered but not yet
acked come again).

A message that is not an event (not Dovecot json or tab-text) is written to the
dead-letter file with its reason, reported as a rejected line, and terminated
(``+TERM``: never delivered again); the source goes on. After ``max_deliver`` deliveries
the server gives a message up by itself.

At shutdown the source stops fetching and, for at most :data:`SHUTDOWN_ACK_SECONDS`,
acks what the exporters deliver meanwhile; the rest comes again, to this daemon or
another, after ``ack_wait``.
"""

from __future__ import annotations

import collections
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TextIO

import anyio
import anyio.abc

from drivers.nats import ConnectionState, NatsConnection, connect
from exporter.delivery.deadletter import DeadLetterFile
from exporter.errors import UsageError
from exporter.formats.reader import read_event
from exporter.observe.text import printable
from exporter.sources.intake import Intake, RejectedEvent, Settles
from exporter.sources.lines import why_rejected
from exporter.sources.reports import SourceReports, reports_for

if TYPE_CHECKING:
    from nats.aio.msg import Msg
    from nats.js import JetStreamContext

SHUTDOWN_ACK_SECONDS: Final = 5.0
FETCH_WAIT: Final = 1.0
"""Seconds a fetch waits for messages on the server before it asks again."""
TROUBLE_INTERVAL: Final = 30.0


@dataclass(frozen=True, repr=False)
class NatsSourceSettings:
    """A ``[source.NAME]`` of type ``nats``."""

    connection: NatsConnection
    stream: str
    consumer: str
    name: str = "nats"
    subject: str = ""
    """The consumer's filter subject ("": every subject of the stream)."""
    fetch: int = 256
    """Messages asked for at once."""
    ack_wait: float = 30.0
    max_deliver: int | None = None
    """Deliveries of a message before the server gives it up; None: no limit."""
    max_ack_pending: int = 10_000

    def __post_init__(self) -> None:
        for what, value in (("stream", self.stream), ("consumer", self.consumer)):
            if not value or any(c in value for c in " .*>\t"):
                raise UsageError(f"{what} {printable(value)!r}: a name without . * > or blanks")
        if not self.ack_wait > 0:
            raise UsageError(f"ack_wait must be positive, got {self.ack_wait}")
        if self.fetch < 1 or self.max_ack_pending < 1:
            raise UsageError("fetch and max_ack_pending must be at least 1")


@dataclass
class NatsCounts:
    received: int = 0
    events: int = 0
    acked: int = 0
    rejected_lines: int = 0
    """Messages that are not events: dead-lettered and terminated."""


@dataclass
class _Pending:
    msg: Msg
    before: Any
    after: Any
    since: float


class NatsSource:
    """Fetches, emits, and acks in order once delivered (see the module's doc)."""

    def __init__(
        self,
        settings: NatsSourceSettings,
        intake: Intake,
        errors: TextIO | SourceReports,
        dead_letters: DeadLetterFile | None = None,
    ) -> None:
        self.settings = settings
        self.counts = NatsCounts()
        self._intake = intake
        self._settles = intake if isinstance(intake, Settles) else None
        self._dead_letters = dead_letters
        self.reports = reports_for(errors, f"source {settings.name}: ")
        self._state = ConnectionState()
        self._pending: collections.deque[_Pending] = collections.deque()
        self._more = anyio.Event()  # a message became pending
        self._room = anyio.Event()  # a pending message was acked
        self._troubled_at = -TROUBLE_INTERVAL

    def announce(self) -> str:
        s = self.settings
        return (
            f"consuming stream {s.stream} with durable consumer {s.consumer} on "
            f"{s.connection.name} (ack_wait {s.ack_wait:g} s, max_ack_pending "
            f"{s.max_ack_pending})"
        )

    async def serve(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        try:
            client = await connect(
                self.settings.connection, f"event-exporter {self.settings.name}", self._state
            )
        except Exception as exc:  # nats-py's: the daemon says it cannot start, and why
            raise OSError(
                f"cannot connect to {self.settings.connection.name}: {_text(exc)}"
            ) from None
        try:
            js = client.jetstream(timeout=10)
            sub = await self._subscribe(js)
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(self._acks)
                tasks.start_soon(self._keep_alive)
                task_status.started()
                try:
                    await self._fetch(sub)
                finally:
                    with anyio.CancelScope(shield=True), anyio.move_on_after(SHUTDOWN_ACK_SECONDS):
                        await self._ack_settled()
                    tasks.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(2):
                await client.close()

    async def _subscribe(self, js: JetStreamContext) -> Any:
        """The pull subscription on the durable consumer, created if missing."""
        from nats.js.api import AckPolicy, ConsumerConfig
        from nats.js.errors import NotFoundError

        s = self.settings
        try:
            await js.consumer_info(s.stream, s.consumer)
        except NotFoundError:
            await js.add_consumer(
                s.stream,
                ConsumerConfig(
                    durable_name=s.consumer,
                    ack_policy=AckPolicy.EXPLICIT,
                    ack_wait=s.ack_wait,
                    max_deliver=s.max_deliver or -1,
                    max_ack_pending=s.max_ack_pending,
                    filter_subject=s.subject or None,
                ),
            )
        except Exception as exc:
            raise OSError(f"stream {s.stream}, consumer {s.consumer}: {_text(exc)}") from None
        return await js.pull_subscribe_bind(durable=s.consumer, stream=s.stream)

    async def _fetch(self, sub: Any) -> None:
        import nats.errors

        s = self.settings
        while True:
            room = s.max_ack_pending - len(self._pending)
            if room <= 0:
                await self._room.wait()
                continue
            try:
                msgs = await sub.fetch(min(s.fetch, room), timeout=FETCH_WAIT)
            except nats.errors.TimeoutError:
                continue  # nothing to fetch now
            except Exception as exc:  # a connection that broke, a leader being elected
                self._trouble(f"fetch failed: {_text(exc)}")
                await anyio.sleep(0.25)
                continue
            for msg in msgs:
                await self._take(msg)

    async def _take(self, msg: Msg) -> None:
        """Emit one message's event (or dead-letter and terminate it); pending it is."""
        self.counts.received += 1
        try:
            event = read_event(msg.data)
        except Exception as exc:  # whatever one message raises is its rejection
            await self._reject(msg, why_rejected(exc))
            return
        before = self._settles.mark() if self._settles is not None else None
        try:
            await self._intake.emit(event)
        except RejectedEvent as rejected:
            await self._reject(msg, rejected.reason)
            return
        except anyio.get_cancelled_exc_class():
            self._pend(msg, before)  # emit queued it all the same
            raise
        self._pend(msg, before)

    def _pend(self, msg: Msg, before: Any) -> None:
        self.counts.events += 1
        after = self._settles.mark() if self._settles is not None else None
        self._pending.append(_Pending(msg, before, after, time.monotonic()))
        self._more.set()

    async def _reject(self, msg: Msg, why: str) -> None:
        """Not an event: to the dead-letter file with why, reported, terminated."""
        self.counts.rejected_lines += 1
        where = self._where(msg)
        self.reports.rejected(where, why, "message")
        if self._dead_letters is not None:
            await self._dead_letters.write_async(
                [msg.data],
                exporter=f"source {self.settings.name}",
                destination=where,
                reason=f"not an event: {why}",
                attempts=self._delivered(msg),
            )
        await self._answer(msg, "term")

    def _where(self, msg: Msg) -> str:
        try:
            sequence = msg.metadata.sequence.stream
        except Exception:
            return f"message on {printable(msg.subject)}"
        return f"stream {self.settings.stream} message {sequence} ({printable(msg.subject)})"

    @staticmethod
    def _delivered(msg: Msg) -> int:
        try:
            return int(msg.metadata.num_delivered)
        except Exception:
            return 1

    async def _acks(self) -> None:
        """Ack the pending messages in order, each once its event is settled."""
        while True:
            if not self._pending:
                self._more = anyio.Event()
                await self._more.wait()
                continue
            await self._ack_first()

    async def _ack_first(self) -> None:
        first = self._pending[0]
        if self._settles is not None:
            await self._settles.settled(first.before, first.after)
        else:
            await self._intake.committed()
        self._pending.popleft()
        await self._answer(first.msg, "ack")
        self.counts.acked += 1
        self._room.set()
        self._room = anyio.Event()

    async def _ack_settled(self) -> None:
        """Shutdown: ack what gets settled meanwhile (the exporters still deliver)."""
        while self._pending:
            await self._ack_first()

    async def _keep_alive(self) -> None:
        """Tell the server the pending messages are being worked on (``+WPI``), every
        third of ``ack_wait``, so that it does not hand them to another daemon."""
        every = self.settings.ack_wait / 3
        while True:
            await anyio.sleep(every)
            now = time.monotonic()
            for pending in list(self._pending):
                if now - pending.since >= every:
                    await self._answer(pending.msg, "in_progress")

    async def _answer(self, msg: Msg, how: str) -> None:
        """Ack, terminate or say +WPI; a failure (the connection gone) is a warning: the
        server hands the message out again after ack_wait."""
        try:
            await getattr(msg, how)()
        except Exception as exc:
            self._trouble(f"{how} failed: {_text(exc)}")

    def _trouble(self, message: str) -> None:
        now = time.monotonic()
        if now - self._troubled_at >= TROUBLE_INTERVAL:
            self._troubled_at = now
            self.reports.warning(
                f"{message} (the client reconnects by itself; further such warnings: at most "
                f"one per {TROUBLE_INTERVAL:g} s)"
            )


def _text(exc: BaseException) -> str:
    return printable(str(exc) or type(exc).__name__, 300)
