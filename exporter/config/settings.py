"""Every setting, declared once: its TOML key, kind, where it lands, one-line doc, option.

One :class:`Setting` feeds everything that names it: the TOML reader of its block
(:mod:`exporter.config.sections`), the argparse option of ``export`` / ``export --to`` /
``replay`` / ``spool drain`` (:func:`add_options`, :func:`option_values`), ``check``'s
listing, and the test that ``config.example.toml`` documents exactly these keys with these
defaults and names each option beside its key. A default is written once, in the
dataclass the setting lands in (``DeliverySettings().batch_max_events``), and read from
there. The builders below turn values read either way into those objects, so a key and
its option mean one thing.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from drivers.bodies.loki import DEFAULT_LABELS, LokiSettings, label_problem
from drivers.bodies.registry import KINDS, body_tables
from drivers.bodies.splunk_hec import SplunkSettings
from drivers.file import FSYNC_POLICIES, FileSettings
from drivers.http import BODIES, COMPRESSIONS, MAX_REDIRECTS, SIGNINGS, HttpSettings
from drivers.nats import NatsConnection, NatsSettings
from exporter.config.kinds import (
    REQUIRED,
    Account,
    Bytes,
    Choice,
    Count,
    DestinationText,
    DovecotVersion,
    FileMode,
    Filter,
    Headers,
    HostPort,
    Kind,
    Labels,
    Names,
    NatsServers,
    Seconds,
    SecretFrom,
    Statuses,
    Switch,
    Text,
    Urls,
    Words,
)
from exporter.config.model import (
    SOURCE_TYPES,
    ExporterConfig,
    GlobalConfig,
    MetricConfig,
    SourceConfig,
)
from exporter.delivery.exporter import DeliverySettings
from exporter.delivery.queue import OVERFLOW_CHOICES, Overflow
from exporter.delivery.retry import RetryPolicy
from exporter.delivery.spool import SYNC_MODES
from exporter.formats.spec import (
    DOVECOT_COMPATS,
    FORMATS,
    INCLUDE_WORDS,
    LOG_TRUNCATE_BYTES,
    FormatSpec,
)
from exporter.formats.timefmt import PRECISIONS, TIME_FORMATS
from exporter.observe.log import FORMATS as LOG_FORMATS
from exporter.observe.log import LEVELS as LOG_LEVELS
from exporter.sources.http import HttpSourceSettings
from exporter.sources.nats import NatsSourceSettings
from exporter.sources.stdin import StdinSourceSettings
from exporter.sources.tail import TailSourceSettings
from exporter.sources.unix import UnixSourceSettings

_SUN_PATH_MAX = 107
_KEY_DEFAULT: Any = object()


@dataclass(frozen=True)
class Setting:
    """One setting: TOML ``key`` of its block, its kind, the field of ``owner`` it lands
    in (``field``, the key's name if not given; two for a HOST:PORT pair), a one-line
    ``doc``, and its command-line option, if it has one (of ``command``; ``cli_default``
    when the option's default is not the key's)."""

    key: str
    kind: Kind
    owner: type
    field: str | tuple[str, str] = ""
    doc: str = ""
    flag: str | None = None
    command: str = "export"
    cli_default: Any = _KEY_DEFAULT

    def __post_init__(self) -> None:
        if not self.field:
            object.__setattr__(self, "field", self.key)
        self.default  # noqa: B018 - a field the owner does not have fails at import

    @property
    def default(self) -> Any:
        """The default of the field it lands in (REQUIRED when it has none)."""
        names = self.field if isinstance(self.field, tuple) else (self.field,)
        found = [_field_default(self.owner, name) for name in names]
        if REQUIRED in found:
            return REQUIRED
        return tuple(found) if isinstance(self.field, tuple) else found[0]

    @property
    def toml_keys(self) -> tuple[str, ...]:
        return self.kind.toml_keys(self.key)

    @property
    def flags(self) -> tuple[str, ...]:
        return () if self.flag is None else self.kind.flags(self.flag)

    @property
    def dest(self) -> str:
        """Its option's attribute in the parsed arguments (argparse's name for it)."""
        return (self.flag or "").lstrip("-").replace("-", "_")

    def value_in(self, owner: object) -> Any:
        """Its value in an object of its ``owner``."""
        if isinstance(self.field, tuple):
            return tuple(getattr(owner, name) for name in self.field)
        return getattr(owner, self.field)


def _field_default(owner: type, name: str) -> Any:
    for field in dataclasses.fields(owner):
        if field.name == name:
            if field.default is not dataclasses.MISSING:
                return field.default
            if field.default_factory is not dataclasses.MISSING:
                return field.default_factory()
            return REQUIRED
    raise AttributeError(f"{owner.__name__} has no field {name!r}")


# -- the table ------------------------------------------------------------------------------

GLOBAL = (
    Setting(
        "dead_letter",
        Text(nonempty=True, metavar="PATH", file_we_write=True),
        GlobalConfig,
        doc="where undeliverable events go, one JSON record each (replay sends them again)",
        flag="--dead-letter",
    ),
    Setting(
        "dead_letter_max_bytes",
        Bytes(1),
        GlobalConfig,
        doc="past this size of the dead-letter file, undeliverable events are dropped "
        "(counted, with a warning)",
        flag="--dead-letter-max-bytes",
    ),
    Setting(
        "shutdown_timeout",
        Seconds(0),
        GlobalConfig,
        doc="after SIGTERM/SIGINT, keep delivering this long, then dead-letter the rest",
        flag="--shutdown-timeout",
    ),
    Setting(
        "metrics_listen",
        HostPort(off=True),
        GlobalConfig,
        doc='run: serve self-metrics on http://HOST:PORT/metrics; "" for none',
    ),
    Setting(
        "metrics_bearer_token",
        SecretFrom(),
        GlobalConfig,
        doc="the bearer token GET /metrics requires (none: open)",
    ),
    Setting(
        "summary_interval",
        Seconds(0),
        GlobalConfig,
        doc="run: seconds between summary lines on stderr; 0: only the last one",
    ),
    Setting(
        "hostname",
        Text(empty_is_none=True),
        GlobalConfig,
        doc='written as every event\'s hostname instead of its own; "" keeps theirs',
    ),
    Setting(
        "log_level", Choice(LOG_LEVELS), GlobalConfig, doc="run's own messages from this level up"
    ),
    Setting(
        "log_format",
        Choice(LOG_FORMATS),
        GlobalConfig,
        doc="run's own log: text lines (time, level, context, message) or json objects",
        flag="--log-format",
        command="run",
        cli_default=None,
    ),
    Setting(
        "unready_after",
        Seconds(0, positive=True),
        GlobalConfig,
        doc="run: GET /ready answers 503 once an exporter has been failing this long",
    ),
    Setting(
        "dovecot_version",
        DovecotVersion(),
        GlobalConfig,
        doc="the Dovecot that sends the events: warn about events it does not send",
        flag="--dovecot-version",
        command="check",
    ),
)

SHIPPING = tuple(setting for setting in GLOBAL if setting.command == "export")
"""The [global] settings ``export --to``, ``replay`` and ``spool drain`` take as options:
the dead-letter file, its bound, the shutdown timeout."""

WRITING = (
    Setting(
        "format",
        Choice(FORMATS),
        FormatSpec,
        doc="json or tab-text, Dovecot's two formats, byte for byte",
        flag="--format",
    ),
    Setting(
        "time_format", Choice(TIME_FORMATS), FormatSpec, doc="timestamps", flag="--time-format"
    ),
    Setting(
        "time_precision",
        Choice(PRECISIONS),
        FormatSpec,
        doc="digits after the second: s none, ms 3, us 6 (Dovecot's), ns 9",
        flag="--time-precision",
    ),
    Setting(
        "truncate",
        Count(0, zero_is_none=True),
        FormatSpec,
        doc="cut string values longer than N bytes, append '...'; 0: never (export --to "
        f"log:... cuts at {LOG_TRUNCATE_BYTES}, as Dovecot's log driver, unless given)",
        flag="--truncate",
    ),
    Setting(
        "dovecot_compat",
        Choice(DOVECOT_COMPATS),
        FormatSpec,
        doc="whose bytes: Dovecot 2.3's or 2.4's (json \\u escapes, truncation); unset, "
        "[global] dovecot_version's series if it names one",
        flag="--dovecot-compat",
    ),
)
"""What is written of each event ([exporter.NAME]; ``export``'s options)."""

DESTINATION = Setting(
    "destination",
    DestinationText(),
    ExporterConfig,
    doc="ship through the delivery engine to DEST: file:PATH, unix:PATH, unix-dgram:PATH, "
    "log:stderr, log:stdout, drop, http://HOST[:PORT]/PATH, https://..., "
    "nats://HOST:PORT[,HOST:PORT...]",
    flag="--to",
    cli_default=None,
)

FILE = (
    Setting(
        "file_mode",
        FileMode(),
        FileSettings,
        "mode",
        doc="mode of a file the file: destination creates",
        flag="--file-mode",
    ),
    Setting(
        "fsync",
        Choice(FSYNC_POLICIES),
        FileSettings,
        doc="file: destination: fsync never, after every batch, or every second (interval)",
        flag="--fsync",
    ),
)
"""A ``file:`` destination's driver ([exporter.NAME], only there)."""

DELIVERY = (
    Setting(
        "queue_max_events",
        Count(1),
        DeliverySettings,
        doc="the exporter's queue holds at most this many events",
        flag="--queue-max-events",
    ),
    Setting(
        "queue_max_bytes",
        Bytes(1),
        DeliverySettings,
        doc="and at most this many bytes",
        flag="--queue-max-bytes",
    ),
    Setting(
        "overflow",
        Choice(OVERFLOW_CHOICES, Overflow),
        DeliverySettings,
        doc="when the queue is full: wait (block: backpressure), or drop and count",
        flag="--overflow",
    ),
    Setting(
        "batch_max_events",
        Count(1),
        DeliverySettings,
        doc="a batch closes at this many events",
        flag="--batch-max-events",
    ),
    Setting(
        "batch_max_bytes",
        Bytes(1),
        DeliverySettings,
        doc="or at this many encoded bytes",
        flag="--batch-max-bytes",
    ),
    Setting(
        "batch_max_age",
        Seconds(0),
        DeliverySettings,
        doc="or this long after its first event",
        flag="--batch-max-age",
    ),
    Setting(
        "retry_initial_delay",
        Seconds(0),
        RetryPolicy,
        "initial_delay",
        doc="retries back off exponentially with full jitter: the first wait's cap",
        flag="--retry-initial-delay",
    ),
    Setting(
        "retry_max_delay",
        Seconds(0),
        RetryPolicy,
        "max_delay",
        doc="every wait's cap (at least the first one's)",
        flag="--retry-max-delay",
    ),
    Setting(
        "retry_max_attempts",
        Count(0, zero_is_none=True),
        RetryPolicy,
        "max_attempts",
        doc="give a batch up after this many attempts; 0: until delivered",
        flag="--retry-max-attempts",
    ),
    Setting(
        "retry_max_elapsed",
        Seconds(0, zero_is_none=True),
        RetryPolicy,
        "max_elapsed",
        doc="or after retrying it this long; 0: no limit",
        flag="--retry-max-elapsed",
    ),
    Setting(
        "retry_max_retry_after",
        Seconds(0),
        RetryPolicy,
        "max_retry_after",
        doc="the longest pause a destination's Retry-After may ask for",
        flag="--retry-after-max",
    ),
    Setting(
        "spool",
        Text(empty_is_none=True, file_we_write=True),
        DeliverySettings,
        doc='run: the queue on disk, in this SQLite file; "" keeps it in memory',
    ),
    Setting(
        "spool_sync",
        Choice(SYNC_MODES),
        DeliverySettings,
        doc="normal: a crash of the process loses nothing committed; full: nor a power failure",
    ),
)
"""The exporter's queue, batches and retries ([exporter.NAME]; the delivery options)."""

EXPORTER = (*WRITING, DESTINATION, *FILE, *DELIVERY)
"""The keys of [exporter.NAME], in the example's order."""

HTTP = (
    Setting(
        "urls",
        Urls(),
        HttpSettings,
        doc="more URLs of the same service, after the destination's (the primary): a "
        "retryable failure moves the next attempt to the next one",
        flag="--http-url",
    ),
    Setting(
        "failback_after",
        Seconds(0, positive=True),
        HttpSettings,
        doc="seconds after leaving the primary URL when requests go to it again",
        flag="--http-failback-after",
    ),
    Setting(
        "body",
        Choice(BODIES),
        HttpSettings,
        doc=", ".join(f"{kind.name} ({kind.doc})" for kind in KINDS.values()),
        flag="--http-body",
    ),
    Setting(
        "compression",
        Choice(COMPRESSIONS),
        HttpSettings,
        doc="Content-Encoding of the bodies",
        flag="--http-compression",
    ),
    Setting(
        "gzip_level",
        Count(0, maximum=9, metavar="0-9"),
        HttpSettings,
        doc="gzip's level, 0 to 9",
        flag="--http-gzip-level",
    ),
    Setting(
        "headers", Headers(), HttpSettings, doc="an extra request header", flag="--http-header"
    ),
    Setting(
        "bearer_token",
        SecretFrom(),
        HttpSettings,
        doc="the bearer token (Authorization: Bearer)",
        flag="--http-bearer-token",
    ),
    Setting(
        "basic_user",
        Text(empty_is_none=True, metavar="USER"),
        HttpSettings,
        doc="basic auth's user, with its password",
        flag="--http-basic-user",
    ),
    Setting(
        "basic_password",
        SecretFrom(),
        HttpSettings,
        doc="basic auth's password",
        flag="--http-basic-password",
    ),
    Setting(
        "signing",
        Choice(SIGNINGS),
        HttpSettings,
        doc="sign each body: stalwart (X-Signature) or standard-webhooks",
        flag="--http-signing",
    ),
    Setting(
        "signing_key",
        SecretFrom(),
        HttpSettings,
        doc="the signing key (a whsec_ key is base64 after its prefix)",
        flag="--http-signing-key",
    ),
    Setting(
        "idempotency_header",
        Text(metavar="NAME"),
        HttpSettings,
        doc="header carrying each batch's key, the same on its retries; '' for none",
        flag="--http-idempotency-header",
    ),
    Setting(
        "connect_timeout",
        Seconds(0, positive=True),
        HttpSettings,
        doc="the longest wait to connect (TLS included)",
        flag="--http-connect-timeout",
    ),
    Setting(
        "read_timeout",
        Seconds(0, positive=True),
        HttpSettings,
        doc="the longest wait for the socket to take or give bytes",
        flag="--http-read-timeout",
    ),
    Setting(
        "request_timeout",
        Seconds(0, positive=True),
        HttpSettings,
        doc="the longest wait for a whole request and its response",
        flag="--http-request-timeout",
    ),
    Setting(
        "concurrency",
        Count(1),
        HttpSettings,
        doc="batches in flight; above 1, order holds only within a batch",
        flag="--http-concurrency",
    ),
    Setting(
        "follow_redirects",
        Switch(),
        HttpSettings,
        doc=f"follow a 307 or 308 within the same origin (at most {MAX_REDIRECTS}), never to "
        "another host",
        flag="--http-follow-redirects",
    ),
    Setting(
        "allow_plain_http",
        Switch(),
        HttpSettings,
        doc="send credentials or a signature over plain http:// to a host that is not "
        "loopback (they travel in clear; refused without this)",
        flag="--http-allow-plain-http",
    ),
    Setting(
        "verify_tls",
        Switch(),
        HttpSettings,
        doc="verify the server's certificate (the option turns it off)",
        flag="--http-insecure",
    ),
    Setting(
        "ca_file",
        Text(empty_is_none=True, metavar="PATH"),
        HttpSettings,
        doc="trust these CA certificates (PEM), not the system's",
        flag="--http-ca-file",
    ),
    Setting(
        "unix_socket",
        Text(empty_is_none=True, metavar="PATH"),
        HttpSettings,
        doc="connect to this socket, not to the host (the URL names Host and path)",
        flag="--http-unix-socket",
    ),
    Setting(
        "retry_statuses",
        Statuses(),
        HttpSettings,
        doc="statuses retried; any other non-2xx is permanent (a collector's body follows "
        "its protocol's table)",
        flag="--http-retry-statuses",
    ),
)
"""An http(s):// destination's driver ([exporter.NAME.http]; the --http-* options)."""

BODY_TABLES: dict[str, tuple[Setting, ...]] = {
    "loki": (
        Setting(
            "labels",
            Labels(label_problem, dict(DEFAULT_LABELS)),
            LokiSettings,
            doc="label = template: the stream of each event, over {hostname}, {event}, "
            "{category}, {category:PREFIX} only (a field would be a stream per value)",
            flag="--loki-label",
        ),
        Setting(
            "tenant",
            Text(empty_is_none=True, metavar="TENANT"),
            LokiSettings,
            doc="the tenant (X-Scope-OrgID) of a multi-tenant Loki; '' for none",
            flag="--loki-tenant",
        ),
    ),
    "splunk": (
        Setting(
            "token",
            SecretFrom(),
            SplunkSettings,
            doc="the HEC token (Authorization: Splunk); required",
            flag="--splunk-token",
        ),
        Setting(
            "channel",
            Text(empty_is_none=True, metavar="UUID"),
            SplunkSettings,
            doc="X-Splunk-Request-Channel, a UUID (a token with acknowledgment needs one); "
            "'' for none",
            flag="--splunk-channel",
        ),
        Setting(
            "host",
            Text(empty_is_none=True, metavar="HOST"),
            SplunkSettings,
            doc="each event's host; '' for the event's hostname",
            flag="--splunk-host",
        ),
        Setting(
            "source",
            Text(nonempty=True, metavar="SOURCE"),
            SplunkSettings,
            doc="each event's source",
            flag="--splunk-source",
        ),
        Setting(
            "sourcetype",
            Text(nonempty=True, metavar="SOURCETYPE"),
            SplunkSettings,
            doc="each event's sourcetype",
            flag="--splunk-sourcetype",
        ),
        Setting(
            "index",
            Text(empty_is_none=True, metavar="INDEX"),
            SplunkSettings,
            doc="the index; '' for the token's default index",
            flag="--splunk-index",
        ),
    ),
}
"""The settings of each collector body's own table ([exporter.NAME.<table>], beside
[exporter.NAME.http]), by table: what :func:`drivers.bodies.registry.body_tables` lists,
each landing in its body's ``options`` dataclass."""


def _check_body_tables() -> None:
    tables = body_tables()
    if set(tables) != set(BODY_TABLES):
        raise AssertionError(f"body tables {sorted(tables)} but settings for {sorted(BODY_TABLES)}")
    for table, kinds in tables.items():
        for setting in BODY_TABLES[table]:
            if any(setting.owner is not kind.options for kind in kinds):
                raise AssertionError(f"{table}.{setting.key} does not land in its body's options")


_check_body_tables()


NATS_CONNECTION = (
    Setting(
        "token",
        SecretFrom(),
        NatsConnection,
        doc="the NATS token to connect with",
        flag="--nats-token",
    ),
    Setting(
        "user",
        Text(empty_is_none=True, metavar="USER"),
        NatsConnection,
        doc="the NATS user, with its password",
        flag="--nats-user",
    ),
    Setting(
        "password",
        SecretFrom(),
        NatsConnection,
        doc="the NATS user's password",
        flag="--nats-password",
    ),
    Setting(
        "creds",
        SecretFrom(),
        NatsConnection,
        doc="a NATS creds file's text (its JWT and NKey seed)",
        flag="--nats-creds",
    ),
    Setting(
        "tls",
        Switch(),
        NatsConnection,
        doc="connect with TLS (tls://HOST:PORT servers do too)",
        flag="--nats-tls",
    ),
    Setting(
        "verify_tls",
        Switch(),
        NatsConnection,
        doc="verify the server's certificate (the option turns it off)",
        flag="--nats-insecure",
    ),
    Setting(
        "ca_file",
        Text(empty_is_none=True, metavar="PATH"),
        NatsConnection,
        doc="trust these CA certificates (PEM), not the system's",
        flag="--nats-ca-file",
    ),
    Setting(
        "connect_timeout",
        Seconds(0, positive=True),
        NatsConnection,
        doc="the longest wait to connect to one server",
        flag="--nats-connect-timeout",
    ),
)
"""How a NATS client connects: the nats driver's and the nats source's."""

NATS = (
    Setting(
        "subject",
        Text(nonempty=True),
        NatsSettings,
        doc="each event's subject: dot-separated tokens, a token may be {event}, {hostname} "
        "or {category} (its first), made a token (. and others become _)",
        flag="--nats-subject",
    ),
    Setting(
        "stream",
        Text(),
        NatsSettings,
        doc="the stream that must take the messages (Nats-Expected-Stream); '' any",
        flag="--nats-stream",
    ),
    Setting(
        "create_stream",
        Switch(),
        NatsSettings,
        doc="create the stream if it is missing (subjects: the subject with * for each "
        "placeholder), with the keys below",
        flag="--nats-create-stream",
    ),
    Setting(
        "replicas",
        Count(1, maximum=5),
        NatsSettings,
        doc="a created stream's replicas (3 on a cluster of 3 survives the loss of a node)",
        flag="--nats-replicas",
    ),
    Setting(
        "duplicate_window",
        Seconds(0),
        NatsSettings,
        doc="a created stream's duplicate window: a message id seen within it is dropped",
        flag="--nats-duplicate-window",
    ),
    Setting(
        "max_bytes",
        Count(0, zero_is_none=True),
        NatsSettings,
        doc="a created stream's size bound in bytes (its oldest messages go); 0: none",
        flag="--nats-max-bytes",
    ),
    Setting(
        "max_age",
        Seconds(0, zero_is_none=True),
        NatsSettings,
        doc="a created stream keeps a message this long at most; 0: no limit",
        flag="--nats-max-age",
    ),
    Setting(
        "ack_timeout",
        Seconds(0, positive=True),
        NatsSettings,
        doc="seconds for a batch's PubAcks; the messages without one are sent again",
        flag="--nats-ack-timeout",
    ),
    *NATS_CONNECTION,
)
"""A nats:// destination's driver ([exporter.NAME.nats]; the --nats-* options)."""

METRIC = (
    Setting(
        "filter",
        Filter(),
        MetricConfig,
        doc="Dovecot's event filter language (2.4 semantics)",
        flag="--filter",
        cli_default="",
    ),
    Setting("exporter", Text(nonempty=True), MetricConfig, doc="the exporter this metric feeds"),
    Setting(
        "include",
        Words(INCLUDE_WORDS),
        MetricConfig,
        doc=f"comma or space separated subset of {','.join(INCLUDE_WORDS)}; '' means none",
        flag="--include",
    ),
    Setting(
        "fields",
        Names(),
        MetricConfig,
        doc="field keys in output order; none: all",
        flag="--fields",
    ),
)
"""Which events an exporter gets and what of them it writes ([metric.NAME])."""

SOURCE_TYPE = Setting(
    "type",
    Choice(SOURCE_TYPES),
    SourceConfig,
    doc="http, unix, file, stdin or nats: what it reads",
)
_MAX_LINE = "a longer line is reported and skipped, never held whole"
SOURCES: dict[str, tuple[Setting, ...]] = {
    "http": (
        Setting(
            "listen",
            HostPort(),
            HttpSourceSettings,
            ("host", "port"),
            doc="HOST:PORT to listen on",
        ),
        Setting(
            "max_body_bytes",
            Bytes(1),
            HttpSourceSettings,
            doc="larger bodies, as sent or once gunzipped, are refused with 413",
        ),
        Setting(
            "idle_timeout",
            Seconds(0.001),
            HttpSourceSettings,
            doc="seconds a connection may stay silent before it is closed",
        ),
        Setting(
            "header_timeout",
            Seconds(0.001),
            HttpSourceSettings,
            doc="seconds for a request's head to arrive (then 408, closed)",
        ),
        Setting(
            "request_timeout",
            Seconds(0.001),
            HttpSourceSettings,
            doc="seconds for its body after the head (then 408, closed)",
        ),
        Setting(
            "max_connections",
            Count(1),
            HttpSourceSettings,
            doc="open connections in all; one more is answered 503 and closed",
        ),
        Setting(
            "max_connections_per_peer",
            Count(1),
            HttpSourceSettings,
            doc="open connections from one address; one more is answered 503 and closed",
        ),
        Setting(
            "reuse_port",
            Switch(),
            HttpSourceSettings,
            doc="SO_REUSEPORT: several run processes listen on this address, the kernel "
            "spreads the connections (each needs its own spool, dead letters, metrics port)",
        ),
        Setting(
            "bearer_token",
            SecretFrom(),
            HttpSourceSettings,
            doc="the bearer token every request must carry (401 without it)",
        ),
        Setting(
            "stalwart_signing_key",
            SecretFrom(),
            HttpSourceSettings,
            doc="check Stalwart's X-Signature with this key",
        ),
    ),
    "unix": (
        Setting(
            "path",
            Text(nonempty=True, max_bytes=_SUN_PATH_MAX),
            UnixSourceSettings,
            doc="the socket, created at start (a stale one replaced, anything else refused)",
        ),
        Setting(
            "mode",
            FileMode(),
            UnixSourceSettings,
            doc="the socket's mode, exactly (whatever the umask)",
        ),
        Setting(
            "owner",
            Account(),
            UnixSourceSettings,
            doc="the socket's owner, a user name or uid; \"\" for this process's",
        ),
        Setting(
            "group",
            Account(group=True),
            UnixSourceSettings,
            doc="the socket's group, a group name or gid; \"\" for this process's",
        ),
        Setting("max_line_bytes", Bytes(1), UnixSourceSettings, doc=_MAX_LINE),
        Setting(
            "max_connections",
            Count(1),
            UnixSourceSettings,
            doc="connections served at once; one more is closed at once and reported",
        ),
    ),
    "file": (
        Setting("path", Text(nonempty=True), TailSourceSettings, doc="the file, followed"),
        Setting(
            "state_file",
            Text(empty_is_none=True, file_we_write=True),
            TailSourceSettings,
            doc='where its position is kept across restarts; "" for nowhere',
        ),
        Setting(
            "poll_interval",
            Seconds(0.001),
            TailSourceSettings,
            doc="seconds between checks for new lines, rotation and truncation",
        ),
        Setting(
            "start_at",
            Choice(("beginning", "end")),
            TailSourceSettings,
            doc="where to start without a saved position",
        ),
        Setting("max_line_bytes", Bytes(1), TailSourceSettings, doc=_MAX_LINE),
    ),
    "stdin": (Setting("max_line_bytes", Bytes(1), StdinSourceSettings, doc=_MAX_LINE),),
    "nats": (
        Setting(
            "stream",
            Text(nonempty=True),
            NatsSourceSettings,
            doc="the JetStream stream to consume",
        ),
        Setting(
            "consumer",
            Text(nonempty=True),
            NatsSourceSettings,
            doc="its durable pull consumer (created if missing); daemons on one share the work",
        ),
        Setting(
            "servers",
            NatsServers(),
            NatsConnection,
            doc="nats://HOST:PORT[,HOST:PORT...]: the servers of the cluster",
        ),
        Setting(
            "subject",
            Text(),
            NatsSourceSettings,
            doc="a created consumer's filter subject (wildcards allowed); '' every subject",
        ),
        Setting(
            "fetch",
            Count(1),
            NatsSourceSettings,
            doc="messages asked for at once",
        ),
        Setting(
            "ack_wait",
            Seconds(0, positive=True),
            NatsSourceSettings,
            doc="a created consumer's ack wait: a message unacked this long (its daemon "
            "gone) goes to another",
        ),
        Setting(
            "max_deliver",
            Count(0, zero_is_none=True),
            NatsSourceSettings,
            doc="a created consumer gives a message up after this many deliveries; 0: never",
        ),
        Setting(
            "max_ack_pending",
            Count(1),
            NatsSourceSettings,
            doc="a created consumer's bound on messages handed out and not yet acked (each "
            "acked once delivered: the backpressure)",
        ),
        *(dataclasses.replace(setting, flag=None) for setting in NATS_CONNECTION),
    ),
}
"""The keys of [source.NAME] besides ``type``, by type."""

BLOCKS: dict[str, tuple[Setting, ...]] = {
    "global": GLOBAL,
    "exporter": EXPORTER,
    "exporter.http": HTTP,
    **{f"exporter.{table}": settings for table, settings in BODY_TABLES.items()},
    "exporter.nats": NATS,
    "metric": METRIC,
    **{f"source.{kind}": (SOURCE_TYPE, *settings) for kind, settings in SOURCES.items()},
}
"""Every block's settings, by the block's name (``source.TYPE`` for a source)."""


# -- values into the objects they land in -------------------------------------------------

Make = Callable[..., Any]
"""A constructor, or :meth:`Table.build` (which records its UsageError as a problem)."""


def _call(make: Callable[..., Any], **values: Any) -> Any:
    return make(**values)


def fields_for(
    owner: type, settings: Iterable[Setting], values: Mapping[str, Any]
) -> dict[str, Any]:
    """The keyword arguments of ``owner`` from the values (by key) of the settings that
    land in it."""
    found: dict[str, Any] = {}
    for setting in settings:
        if setting.owner is owner:
            value = setting.kind.land(values[setting.key])
            if isinstance(setting.field, tuple):
                found.update(zip(setting.field, value, strict=True))
            else:
                found[setting.field] = value
    return found


def format_spec(values: Mapping[str, Any]) -> FormatSpec:
    return FormatSpec(**fields_for(FormatSpec, WRITING, values))


def file_settings(values: Mapping[str, Any]) -> FileSettings:
    return FileSettings(**fields_for(FileSettings, FILE, values))


def delivery_settings(
    values: Mapping[str, Any], http_body: str | None, make: Make = _call
) -> DeliverySettings | None:
    """Queue, batches and retries; an http body of ``single`` (one event per request) makes
    batches of one event, so that retries and dead letters are per event."""
    retry = make(RetryPolicy, **fields_for(RetryPolicy, DELIVERY, values))
    delivery: DeliverySettings | None = make(
        DeliverySettings,
        **fields_for(DeliverySettings, DELIVERY, values),
        retry=retry or RetryPolicy(),
    )
    if delivery is not None and http_body == "single":
        delivery = replace(delivery, batch_max_events=1)
    return delivery


def http_settings(
    values: Mapping[str, Any],
    url: str,
    event_format: str,
    make: Make = _call,
    options: object | None = None,
) -> HttpSettings | None:
    """``options``: the body's own settings (:func:`body_options`), None for its defaults."""
    made: HttpSettings | None = make(
        HttpSettings,
        url=url,
        event_format=event_format,
        options=options,
        **fields_for(HttpSettings, HTTP, values),
    )
    return made


def body_options(body: str, values: Mapping[str, Any], make: Make = _call) -> object | None:
    """The settings of ``body``'s own table from ``values`` (by key), or None when it has
    no table."""
    kind = KINDS.get(body)
    if kind is None or kind.table is None or kind.options is None:
        return None
    made: object | None = make(
        kind.options, **fields_for(kind.options, BODY_TABLES[kind.table], values)
    )
    return made


def nats_settings(
    values: Mapping[str, Any],
    target: str,
    exporter: str,
    event_format: str,
    make: Make = _call,
) -> NatsSettings | None:
    """A nats:// destination's driver settings (UsageError, or a problem by ``make``,
    when they do not fit)."""
    from drivers.nats import parse_servers

    connection: NatsConnection | None = make(
        NatsConnection,
        servers=parse_servers(target),
        **fields_for(NatsConnection, NATS, values),
    )
    if connection is None:
        return None
    made: NatsSettings | None = make(
        NatsSettings,
        connection=connection,
        exporter=exporter,
        event_format=event_format,
        **fields_for(NatsSettings, NATS, values),
    )
    return made


def nats_source_settings(
    values: Mapping[str, Any], name: str, make: Make = _call
) -> NatsSourceSettings | None:
    """A ``[source.NAME]`` of type nats (its servers already parsed, None when wrong)."""
    settings = SOURCES["nats"]
    if any(values[key] is None for key in ("servers", "stream", "consumer")):
        return None  # required: its problem is said
    connection: NatsConnection | None = make(
        NatsConnection, **fields_for(NatsConnection, settings, values)
    )
    if connection is None:
        return None
    made: NatsSourceSettings | None = make(
        NatsSourceSettings,
        connection=connection,
        name=name,
        **fields_for(NatsSourceSettings, settings, values),
    )
    return made


# -- the command line -------------------------------------------------------------------------


def add_options(group: Any, settings: Iterable[Setting], **more: Any) -> None:
    """The options of the settings that have one, each with its doc and default."""
    for setting in settings:
        if setting.flag is not None:
            default = (
                setting.default if setting.cli_default is _KEY_DEFAULT else setting.cli_default
            )
            setting.kind.add_option(
                group,
                setting.flag,
                default=None if default is REQUIRED else default,
                help=_help(setting, default),
                **more,
            )


def _help(setting: Setting, default: Any) -> str:
    text = setting.doc
    shows_default = not isinstance(setting.kind, (Switch, SecretFrom))
    if shows_default and default not in (None, REQUIRED, "", (), {}):
        text += f"; default {setting.kind.shown(default)}"
    return text.replace("%", "%%")


def option_values(args: argparse.Namespace, settings: Iterable[Setting]) -> dict[str, Any]:
    """Each setting's value (by key) from parsed arguments: what its option gave, else its
    default; UsageError for a secret that cannot be read."""
    return {
        setting.key: setting.kind.from_args(args, setting.dest)
        if setting.flag is not None
        else setting.default
        for setting in settings
    }


def shown_settings(
    settings: Iterable[Setting], owners: Mapping[type, object], *, chosen_only: bool = False
) -> list[str]:
    """``key value`` of each setting whose owner is among ``owners`` (by type), as ``check``
    shows it: secrets masked, with where they come from; ``chosen_only``: of those whose
    value is not their default (what ``run``'s start line says of an exporter)."""
    return [
        f"{setting.key} {setting.kind.shown(value)}"
        for setting in settings
        if setting.owner in owners
        for value in [setting.value_in(owners[setting.owner])]
        if not (chosen_only and (setting.default is REQUIRED or value == setting.default))
    ]


def exporter_owners(exporter: ExporterConfig) -> dict[type, object]:
    """The objects an exporter's settings land in, by type, for :func:`shown_settings`."""
    owners: dict[type, object] = {
        FormatSpec: exporter.spec,
        DeliverySettings: exporter.delivery,
        RetryPolicy: exporter.delivery.retry,
    }
    if exporter.driver_settings is not None:
        owners[type(exporter.driver_settings)] = exporter.driver_settings
    if isinstance(exporter.driver_settings, HttpSettings) and exporter.driver_settings.options:
        options = exporter.driver_settings.options
        owners[type(options)] = options

    if isinstance(exporter.driver_settings, NatsSettings):
        owners[NatsConnection] = exporter.driver_settings.connection
    return owners


def body_table_of(settings: object) -> tuple[str, tuple[Setting, ...]]:
    """(its table, its settings) of an http destination's collector body; ("", ()) for
    any other destination or body."""
    if isinstance(settings, HttpSettings):
        table = KINDS[settings.body].table
        if table is not None:
            return table, BODY_TABLES[table]
    return "", ()


def named(settings: Iterable[Setting], key: str) -> Setting:
    """The setting of ``key`` among ``settings``."""
    for setting in settings:
        if setting.key == key:
            return setting
    raise KeyError(key)
