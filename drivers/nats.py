"""The ``nats`` driver: each event one message to a NATS JetStream stream, on nats-py.

``destination = "nats://HOST:PORT[,HOST:PORT...]"``: the servers of one cluster (the
client moves to another when one goes, and learns the others from the cluster). Each
event of a batch is one message, its bytes as formatted (no newline), published on a
subject made from :attr:`NatsSettings.subject` (``dovecot.{hostname}.{event}``: a
consumer filters on it) with a ``Nats-Msg-Id`` that is a hash of the exporter's name and
the event's bytes (:func:`message_id`): the same event sent again, after a PubAck that
never came, is dropped by the stream within its duplicate window. The messages of a
batch are published pipelined (no round trip per event), and the batch is delivered once
every message's PubAck came back; those without one (a timeout, a leader that died, a
connection that broke) are sent again, with the same ids, by the one retry loop. Two
byte-identical events of one exporter have one id: within the duplicate window, the
stream keeps one of them.

Subject placeholders: ``{event}`` (the event's name), ``{hostname}``, ``{category}``
(its first category), each a whole token. A value is made a token: every character that
is not a letter, a digit, ``-`` or ``_`` becomes ``_`` (``mail.example.com`` ->
``mail_example_com``: a dot would make two tokens), and one that is missing (not
included by the metric, or absent) is ``_``. They are read back from the formatted
bytes (json: its members; tab-text: its ``event:``, ``hostname:``, ``category:`` items),
only when the template has placeholders.

Classification, in one place (:meth:`NatsDriver._error`): a message the server refuses
for what it is (larger than the server's max_payload, a subject or header it refuses, a
stream that says 4xx other than "no stream yet") is permanent; no connection, a
timeout, no stream answering (``no responders``: the stream's leader being elected, or
no stream on the subject), a 503 or 5xx, a broken connection are retryable.

Credentials: a token, a user and password, or a creds file (JWT and NKey seed), each a
:class:`~exporter.secret.Secret` from a variable or a file; TLS when ``tls`` (verified
by default, against ``ca_file`` or the system's CAs).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import ssl
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import orjson

from drivers.base import Batch
from exporter.errors import (
    DeliveryError,
    DriverClosedError,
    PermanentDeliveryError,
    RetryableDeliveryError,
    UsageError,
)
from exporter.observe.text import printable
from exporter.secret import Secret

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from nats.js import JetStreamContext

PLACEHOLDERS = ("event", "hostname", "category")
DEFAULT_SUBJECT = "dovecot.{hostname}.{event}"
MISSING = "_"
"""A placeholder's token when the event has no such value."""
_TOKEN_CHARS = re.compile(r"[^A-Za-z0-9_-]")
_LITERAL_TOKEN = re.compile(r"[!-~]+")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_HOST_PORT = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})")


def parse_servers(target: str) -> tuple[str, ...]:
    """``nats://a:4222,b:4222`` (``tls://`` too) -> ``("nats://a:4222", "nats://b:4222")``;
    UsageError says what is allowed."""
    scheme, sep, rest = target.partition("://")
    allowed = "nats://HOST:PORT[,HOST:PORT...] (or tls://...)"
    if not sep or scheme.lower() not in ("nats", "tls") or not rest:
        raise UsageError(f"a NATS destination is {allowed}")
    servers = []
    for part in rest.split(","):
        part = part.strip().removeprefix(f"{scheme}://")
        found = _HOST_PORT.fullmatch(part)
        if found is None or not 0 < int(found[2]) <= 65535:
            raise UsageError(
                f"{printable(part)!r} is not HOST:PORT (a NATS destination is {allowed})"
            )
        servers.append(f"{scheme.lower()}://{part}")
    return tuple(servers)


def check_subject(template: str) -> list[str]:
    """The placeholders of a subject template, in order; UsageError says what is wrong."""
    if not template:
        raise UsageError("a subject must not be empty")
    names = []
    for token in template.split("."):
        if not token:
            raise UsageError(f"{template!r}: an empty token (two dots, or a dot at an end)")
        found = _PLACEHOLDER.search(token)
        if found is not None:
            if found[0] != token:
                raise UsageError(
                    f"{template!r}: a placeholder is a whole token ({found[0]} in {token!r})"
                )
            if found[1] not in PLACEHOLDERS:
                allowed = ", ".join("{" + name + "}" for name in PLACEHOLDERS)
                raise UsageError(
                    f"{template!r}: unknown placeholder {found[0]} (allowed: {allowed})"
                )
            names.append(found[1])
            continue
        if not _LITERAL_TOKEN.fullmatch(token) or any(c in token for c in "*>{}"):
            raise UsageError(
                f"{printable(template)!r}: token {printable(token)!r} may hold printable ASCII "
                "but no space, '*', '>', '{' or '}' (a subject one publishes to has no wildcards)"
            )
    return names


def stream_subject(template: str) -> str:
    """The subjects a stream takes for ``template``: each placeholder a ``*``."""
    return ".".join("*" if token.startswith("{") else token for token in template.split("."))


def message_id(exporter: str, event: bytes) -> str:
    """``Nats-Msg-Id``: the same for the same exporter and bytes, on every retry and restart."""
    return hashlib.blake2b(event, digest_size=16, key=exporter.encode()[:64]).hexdigest()


@dataclass(frozen=True, repr=False)
class NatsConnection:
    """Where a NATS client connects and as whom: the driver's and the source's."""

    servers: tuple[str, ...]
    token: Secret | None = None
    user: str | None = None
    password: Secret | None = None
    creds: Secret | None = None
    """A creds file's text (its JWT and NKey seed)."""
    tls: bool = False
    verify_tls: bool = True
    ca_file: str | None = None
    connect_timeout: float = 5.0

    def __post_init__(self) -> None:
        if not self.servers:
            raise UsageError("a NATS destination names at least one server")
        given = [self.token is not None, self.user is not None, self.creds is not None]
        if sum(given) > 1:
            raise UsageError("give a token, a user and password, or a creds file: one of them")
        if (self.user is None) != (self.password is None):
            raise UsageError("a NATS user needs its password, and a password its user")
        if not self.connect_timeout > 0:
            raise UsageError(f"connect timeout must be positive, got {self.connect_timeout}")
        if self.ca_file is not None and not self.tls:
            raise UsageError("ca_file is for tls = true")

    @property
    def name(self) -> str:
        return "nats://" + ",".join(server.split("://", 1)[1] for server in self.servers)

    def ssl_context(self) -> ssl.SSLContext | None:
        if not (self.tls or any(server.startswith("tls://") for server in self.servers)):
            return None
        context = ssl.create_default_context(cafile=self.ca_file)
        if not self.verify_tls:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context


@dataclass
class ConnectionState:
    """What the client's callbacks said last (it reconnects on its own)."""

    last_error: str | None = None
    connected: bool = False
    connections: int = 0


async def connect(settings: NatsConnection, name: str, state: ConnectionState) -> Client:
    """A connected client (reconnecting on its own, without limit) whose callbacks keep
    ``state``; nats-py's exceptions are left to the caller's one mapping."""
    import nats
    from nats.aio.client import RawCredentials

    async def error(exc: Exception) -> None:
        state.last_error = str(exc) or type(exc).__name__

    async def disconnected() -> None:
        state.connected = False

    async def reconnected() -> None:
        state.connected = True
        state.connections += 1

    options: dict[str, Any] = {}
    if settings.token is not None:
        options["token"] = settings.token.reveal()
    if settings.user is not None and settings.password is not None:
        options.update(user=settings.user, password=settings.password.reveal())
    if settings.creds is not None:
        options["user_credentials"] = RawCredentials(settings.creds.reveal())
    client = await nats.connect(
        servers=list(settings.servers),
        name=name,
        connect_timeout=settings.connect_timeout,
        reconnect_time_wait=0.25,
        max_reconnect_attempts=-1,
        allow_reconnect=True,
        tls=settings.ssl_context(),
        error_cb=error,
        disconnected_cb=disconnected,
        reconnected_cb=reconnected,
        **options,
    )
    state.connected = True
    state.connections += 1
    return client


@dataclass(frozen=True, repr=False)
class NatsSettings:
    """The ``nats`` driver's settings ([exporter.NAME.nats])."""

    connection: NatsConnection
    exporter: str = "export"
    """Part of every message id: two exporters' same events are two messages."""
    event_format: Literal["json", "tab-text"] = "json"
    subject: str = DEFAULT_SUBJECT
    stream: str = ""
    """The stream that must take the messages (``Nats-Expected-Stream``); "" any."""
    create_stream: bool = False
    replicas: int = 1
    duplicate_window: float = 120.0
    max_bytes: int | None = None
    max_age: float | None = None
    ack_timeout: float = 10.0
    """Seconds for the PubAcks of a batch; those missing then are sent again."""
    placeholders: tuple[str, ...] = field(init=False, default=())

    def __post_init__(self) -> None:
        object.__setattr__(self, "placeholders", tuple(check_subject(self.subject)))
        if self.create_stream and not self.stream:
            raise UsageError("create_stream needs the stream's name (stream)")
        if self.stream and not re.fullmatch(r"[A-Za-z0-9_-]{1,255}", self.stream):
            raise UsageError(
                f"stream {printable(self.stream)!r}: a stream name is letters, digits, - and _"
            )
        if not 1 <= self.replicas <= 5:
            raise UsageError(f"replicas must be 1 to 5, got {self.replicas}")
        if not self.ack_timeout > 0:
            raise UsageError(f"ack timeout must be positive, got {self.ack_timeout}")
        if self.duplicate_window < 0:
            raise UsageError(f"duplicate window must not be negative, got {self.duplicate_window}")


def _token(value: object) -> str:
    if not isinstance(value, str) or not value:
        return MISSING
    return _TOKEN_CHARS.sub("_", value)


def _json_values(line: bytes) -> dict[str, object]:
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return {}
    if not isinstance(obj, dict):
        return {}
    categories = obj.get("categories")
    first = categories[0] if isinstance(categories, list) and categories else None
    return {"event": obj.get("event"), "hostname": obj.get("hostname"), "category": first}


def _tabtext_values(line: bytes) -> dict[str, object]:
    found: dict[str, object] = {}
    for item in line.split(b"\t"):
        key, sep, value = item.partition(b":")
        name = key.decode("ascii", "replace")
        if sep and name in PLACEHOLDERS and name not in found:
            found[name] = value.decode("utf-8", "replace")
    return found


class SubjectMaker:
    """The subject of one formatted event, by the template."""

    def __init__(self, template: str, event_format: str) -> None:
        self._template = template
        self._names = check_subject(template)
        self._values = _json_values if event_format == "json" else _tabtext_values
        tokens = template.split(".")
        self._slots = [
            (index, token[1:-1]) for index, token in enumerate(tokens) if token.startswith("{")
        ]
        self._tokens = tokens

    def __call__(self, line: bytes) -> str:
        if not self._slots:
            return self._template
        values = self._values(line)
        tokens = list(self._tokens)
        for index, name in self._slots:
            tokens[index] = _token(values.get(name))
        return ".".join(tokens)


class NatsDriver:
    """Connects lazily (first send, after ``reopen()``); the client reconnects itself."""

    def __init__(self, settings: NatsSettings) -> None:
        self._settings = settings
        self._subject = SubjectMaker(settings.subject, settings.event_format)
        self._client: Client | None = None
        self._reply_prefix: str | None = None
        self._waiting: dict[str, asyncio.Future[None]] = {}  # by reply token: PubAcks due
        self._sent = 0
        self._state = ConnectionState()
        self._stream_ready = not settings.create_stream
        self._closed = False
        # the batch last tried (by identity), its bytes, and which of its messages were acked
        self._acked: tuple[Batch, bytes, set[int]] | None = None

    @property
    def name(self) -> str:
        return self._settings.connection.name

    @property
    def concurrency(self) -> int:
        return 1

    @property
    def connections(self) -> int:
        return self._state.connections

    async def send(self, batch: Batch) -> None:
        if self._closed:
            raise DriverClosedError(f"{self.name}: send after close")
        try:
            client = await self._connected()
            await self._publish(client, batch)
        except DeliveryError:
            raise
        except Exception as exc:
            raise self._error(exc) from None

    async def _connected(self) -> Client:
        if self._client is None:
            self._client = await connect(
                self._settings.connection, f"event-exporter {self._settings.exporter}", self._state
            )
            self._reply_prefix = None
        if not self._stream_ready:
            await self._create_stream(self._client.jetstream(timeout=self._settings.ack_timeout))
            self._stream_ready = True
        return self._client

    async def _create_stream(self, js: JetStreamContext) -> None:
        """The stream, if it is not there yet (one that is, is left as it is)."""
        from nats.js.api import StreamConfig
        from nats.js.errors import NotFoundError

        settings = self._settings
        try:
            await js.stream_info(settings.stream)
            return
        except NotFoundError:
            pass
        await js.add_stream(
            StreamConfig(
                name=settings.stream,
                subjects=[stream_subject(settings.subject)],
                num_replicas=settings.replicas,
                duplicate_window=settings.duplicate_window,
                max_bytes=settings.max_bytes,
                max_age=settings.max_age,
            )
        )

    async def _publish(self, client: Client, batch: Batch) -> None:
        """Every message of ``batch`` not acked yet, pipelined (no await that yields
        between two: they leave in a few writes); then wait for the PubAcks."""
        acked = self._acked_of(batch)
        settings = self._settings
        exporter = settings.exporter
        inbox = await self._inbox(client)
        loop = asyncio.get_running_loop()
        futures: dict[asyncio.Future[None], int] = {}
        waiting = self._waiting
        try:
            for index, line in enumerate(batch.lines()):
                if index in acked:
                    continue
                headers = {"Nats-Msg-Id": message_id(exporter, line)}
                if settings.stream:
                    headers["Nats-Expected-Stream"] = settings.stream
                self._sent += 1
                token = str(self._sent)
                future: asyncio.Future[None] = loop.create_future()
                waiting[token] = future
                futures[future] = index
                await client.publish(
                    self._subject(line), line, reply=f"{inbox}.{token}", headers=headers
                )
            if futures:
                await asyncio.wait(list(futures), timeout=settings.ack_timeout)
        finally:
            for future in futures:
                if not future.done():
                    future.cancel()
            waiting.clear()
            failure = self._settle(futures, acked)
        if failure is not None:
            raise failure
        self._acked = None

    async def _inbox(self, client: Client) -> str:
        """The subject prefix our PubAcks come back on (subscribed once a connection)."""
        if self._reply_prefix is None:
            prefix = client.new_inbox()
            await client.subscribe(f"{prefix}.*", cb=self._pub_ack)
            self._reply_prefix = prefix
        return self._reply_prefix

    async def _pub_ack(self, msg: Msg) -> None:
        """A PubAck (or JetStream's refusal, or "no responders") for one message."""
        from nats.js.errors import APIError, NoStreamResponseError

        future = self._waiting.pop(msg.subject.rpartition(".")[2], None)
        if future is None or future.done():
            return
        if msg.headers and msg.headers.get("Status") == "503":
            future.set_exception(NoStreamResponseError())
            return
        try:
            answer = orjson.loads(msg.data)
        except orjson.JSONDecodeError:
            future.set_exception(APIError(description=f"not a PubAck: {msg.data[:100]!r}"))
            return
        error = answer.get("error") if isinstance(answer, dict) else None
        if error is not None:
            future.set_exception(APIError.from_error(error))
        else:
            future.set_result(None)

    def _acked_of(self, batch: Batch) -> set[int]:
        """Which messages of ``batch`` an earlier attempt got a PubAck for."""
        if self._acked is not None:
            last, data, acked = self._acked
            if last is batch and data == batch.data:
                return acked
        acked = set()
        self._acked = (batch, bytes(batch.data), acked)
        return acked

    def _settle(
        self, futures: dict[asyncio.Future[None], int], acked: set[int]
    ) -> DeliveryError | None:
        """Record the acks; cancel what is still waiting (nats-py keeps a slot for each
        until it is done); the error of the first message not acked, if any."""
        errors: list[DeliveryError] = []
        missing = 0
        for future, index in futures.items():
            if not future.done():
                future.cancel()
                missing += 1
            elif future.cancelled():
                missing += 1
            elif (exc := future.exception()) is None:
                acked.add(index)
            else:
                errors.append(self._error(exc))
        permanent = [error for error in errors if isinstance(error, PermanentDeliveryError)]
        failure = (permanent or errors or [None])[0]
        if failure is None and missing:
            failure = RetryableDeliveryError(
                f"{self.name}: no PubAck within {self._settings.ack_timeout:g} s for "
                f"{missing} of {len(futures)} messages{self._last_error()}"
            )
        return failure

    def _last_error(self) -> str:
        if self._state.connected or self._state.last_error is None:
            return ""
        return f" (disconnected: {printable(self._state.last_error, 200)})"

    async def flush(self) -> None:
        return None

    async def reopen(self) -> None:
        await self._disconnect()

    async def aclose(self) -> None:
        self._closed = True
        await self._disconnect()

    async def _disconnect(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                await client.close()
            except Exception as exc:
                raise self._error(exc) from None

    def _error(self, exc: BaseException) -> DeliveryError:
        """The one place where a nats-py failure becomes a delivery error."""
        import nats.errors
        import nats.js.errors

        text = printable(str(exc) or type(exc).__name__, 300)
        message = f"{self.name}: {text}"
        if isinstance(exc, nats.js.errors.APIError):
            code = exc.code or 0
            message = f"{self.name}: JetStream answered {code} ({text})"
            if 400 <= code < 500 and code not in (404, 408):
                return PermanentDeliveryError(message)
            return RetryableDeliveryError(message)
        if isinstance(exc, nats.js.errors.NoStreamResponseError):
            return RetryableDeliveryError(
                f"{self.name}: no stream answered (its leader being elected, or no stream "
                f"takes the subject){self._last_error()}"
            )
        permanent = (
            nats.errors.MaxPayloadError,
            nats.errors.BadSubjectError,
            nats.errors.BadHeaderError,
            nats.errors.InvalidUserCredentialsError,
        )
        if isinstance(exc, permanent):
            return PermanentDeliveryError(message)
        if isinstance(exc, (nats.errors.Error, OSError, asyncio.TimeoutError)):
            return RetryableDeliveryError(message + self._last_error())
        if isinstance(exc, UsageError | ValueError):
            return PermanentDeliveryError(message)
        return RetryableDeliveryError(f"{self.name}: {type(exc).__name__}: {text}")
