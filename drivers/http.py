"""The ``http-post`` driver: batches POSTed to a collector or a webhook, on httpx.

Dovecot posts one request per event with a 250 ms deadline, never retries, and drops
what a slow or absent server cannot take. Here a batch is one request; the driver only
says how it went (delivered, retryable with the server's ``Retry-After``, permanent) and
the engine's one retry loop does the rest, so nothing accepted is lost silently.

Bodies (``HttpSettings.body``):

* ``ndjson`` (default): the batch as it is, one event per line, ``application/x-ndjson``;
* ``json-array``: ``[e1,e2,...]``, ``application/json`` (json events only);
* ``single``: one event per request, Dovecot's http-post body byte for byte (the event,
  no newline) with its Content-Type: ``application/json`` for json, ``text/plain`` for
  tab-text. Give such an exporter batches of one event (``export --to`` does), so that
  retries and dead letters are per event; a longer batch is sent event by event and a
  retry resumes after the events already taken, so none is sent twice.

Every request carries an idempotency key (``Idempotency-Key``: the batch's key, the same
on every retry of that batch), so a receiver can drop the duplicates a lost response
causes. Optional signing, of the exact bytes sent (after compression): Stalwart's
``X-Signature: base64(HMAC-SHA256(key, body))``, or Standard Webhooks' ``webhook-id``,
``webhook-timestamp``, ``webhook-signature: v1,base64(HMAC-SHA256(key, id.timestamp.body))``
(signed again at each attempt, so a retry after an outage is not refused as stale).

Classification, in one place (:func:`classify_status`, :func:`classify_exception`):
2xx delivered; ``retry_statuses`` (default 408, 425, 429, 500, 502, 503, 504) and
transport failures (connect, read, write, timeouts, a server breaking the protocol)
retryable, with ``Retry-After`` (seconds or an HTTP date) when the server sent one; any
other status permanent, with the status and the first bytes of the response body in
the reason. Redirects are not followed unless ``follow_redirects``: a 3xx is then a
permanent failure that names where it pointed. Secrets (auth, signing key) never appear
in a message: they are :class:`~exporter.secret.Secret` and only headers see them.
"""

from __future__ import annotations

import base64
import datetime
import email.utils
import gzip
import hashlib
import hmac
import logging
import os
import re
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import anyio
import anyio.to_thread
import httpx

from drivers.base import Batch
from exporter.errors import (
    DeliveryError,
    DriverClosedError,
    PermanentDeliveryError,
    RetryableDeliveryError,
    UsageError,
)
from exporter.secret import Secret

Body = Literal["ndjson", "json-array", "single"]
Compression = Literal["none", "gzip"]
Signing = Literal["none", "stalwart", "standard-webhooks"]
BODIES: tuple[Body, ...] = ("ndjson", "json-array", "single")
COMPRESSIONS: tuple[Compression, ...] = ("none", "gzip")
SIGNINGS: tuple[Signing, ...] = ("none", "stalwart", "standard-webhooks")
DEFAULT_RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
_ERROR_BODY_BYTES = 200
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 field names
_HEADER_VALUE = re.compile(r"[\x20-\x7e\t]*")
_HOST = re.compile(r"[A-Za-z0-9._:-]+")  # a name, IPv4, or IPv6 (httpx drops the brackets)
# Smaller bodies are compressed inline: the hop to a worker thread (~65 us here) costs
# more than gzip level 1 of a few KiB.
_GZIP_IN_THREAD_BYTES = 64 << 10
_USER_AGENT = "event-exporter"


@dataclass(frozen=True, repr=False)
class HttpSettings:
    """Where and how batches are posted. Checked when the driver is made."""

    url: str
    body: Body = "ndjson"
    event_format: Literal["json", "tab-text"] = "json"
    """What the events are: decides ``single``'s Content-Type; ``json-array`` needs json."""
    compression: Compression = "none"
    gzip_level: int = 1
    headers: Mapping[str, str] = field(default_factory=dict)
    bearer_token: Secret | None = None
    basic_user: str | None = None
    basic_password: Secret | None = None
    signing: Signing = "none"
    signing_key: Secret | None = None
    idempotency_header: str = "Idempotency-Key"
    """Header carrying the batch key; empty: none."""
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    """Also the write timeout: the longest wait for the socket to take or give bytes."""
    request_timeout: float = 60.0
    """The whole request, connecting and the response included."""
    concurrency: int = 1
    """Batches in flight at once. 1 keeps the order of events; above 1 order holds only
    within a batch."""
    follow_redirects: bool = False
    verify_tls: bool = True
    ca_file: str | None = None
    unix_socket: str | None = None
    """Connect to this unix socket instead of the URL's host (the URL still names the
    Host header and the path)."""
    retry_statuses: frozenset[int] = DEFAULT_RETRY_STATUSES

    def __post_init__(self) -> None:
        url = _parse_url(self.url)
        if url.scheme not in ("http", "https"):
            raise UsageError(f"http destination {self.url!r}: the scheme must be http or https")
        if url.userinfo:
            raise UsageError(
                "http destination: credentials in the URL are refused (they would show in "
                "messages); use basic auth with the password from a file or variable"
            )
        if self.body not in BODIES:
            raise UsageError(f"unknown http body {self.body!r} (allowed: {', '.join(BODIES)})")
        if self.body == "json-array" and self.event_format != "json":
            raise UsageError("http body json-array needs json events (--format json)")
        if self.compression not in COMPRESSIONS:
            raise UsageError(
                f"unknown compression {self.compression!r} (allowed: {', '.join(COMPRESSIONS)})"
            )
        if not 0 <= self.gzip_level <= 9:
            raise UsageError(f"gzip level must be 0 to 9, got {self.gzip_level}")
        if self.signing not in SIGNINGS:
            raise UsageError(f"unknown signing {self.signing!r} (allowed: {', '.join(SIGNINGS)})")
        if (self.signing != "none") != (self.signing_key is not None):
            raise UsageError("signing and a signing key go together: give both or neither")
        if self.bearer_token is not None and self.basic_user is not None:
            raise UsageError("give a bearer token or basic auth, not both")
        if (self.basic_user is None) != (self.basic_password is None):
            raise UsageError("basic auth needs both a user and a password")
        for name, value in (
            ("connect timeout", self.connect_timeout),
            ("read timeout", self.read_timeout),
            ("request timeout", self.request_timeout),
        ):
            if not value > 0:
                raise UsageError(f"http {name} must be positive, got {value}")
        if self.ca_file is not None and not os.path.isfile(self.ca_file):
            raise UsageError(f"CA file {self.ca_file} does not exist")
        if self.concurrency < 1:
            raise UsageError(f"http concurrency must be at least 1, got {self.concurrency}")
        for status in self.retry_statuses:
            if not 100 <= status <= 599 or 200 <= status <= 299:
                raise UsageError(f"retry status {status} is not a 1xx, 3xx, 4xx or 5xx status")
        for header, text in self.headers.items():
            if not _TOKEN.fullmatch(header) or not _HEADER_VALUE.fullmatch(text):
                raise UsageError(
                    f"header {header!r}: a name is letters, digits and !#$%&'*+-.^_`|~; "
                    "a value is printable ASCII"
                )
        if self.idempotency_header and not _TOKEN.fullmatch(self.idempotency_header):
            raise UsageError(f"idempotency header {self.idempotency_header!r} is not a header name")
        for what, secret in (
            ("bearer token", self.bearer_token),
            ("password", self.basic_password),
        ):
            if secret is not None and not _HEADER_VALUE.fullmatch(secret.reveal()):
                raise UsageError(
                    f"the {what} from {secret.origin} holds characters a header cannot carry "
                    "(printable ASCII only; a second line?)"
                )

    def __repr__(self) -> str:
        """Without the URL's query (it may hold a token); Secrets print as ``***``."""
        return f"HttpSettings(url={_safe_url(httpx.URL(self.url))!r}, body={self.body!r}, ...)"

    @property
    def content_type(self) -> str:
        if self.body == "ndjson":
            return "application/x-ndjson"
        if self.body == "json-array" or self.event_format == "json":
            return "application/json"
        return "text/plain"


def printable_url(text: str) -> str:
    """``text`` as it may be printed (``check``, messages): without its query."""
    return _safe_url(_parse_url(text))


def _safe_url(url: httpx.URL) -> str:
    """The URL as it may be printed: no query (tokens travel there), no fragment."""
    safe = str(url.copy_with(query=None, fragment=None))
    return safe + "?***" if url.query else safe


class _RedactQueries(logging.Filter):
    """httpx logs each request's full URL at INFO: print it without its query."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                _safe_url(arg) if isinstance(arg, httpx.URL) else arg for arg in record.args
            )
        return True


_REDACT_QUERIES = _RedactQueries()


def _parse_url(text: str) -> httpx.URL:
    """The URL, or a UsageError that does not repeat it (its query may hold a token)."""
    try:
        url = httpx.URL(text)
        port = url.port
    except (httpx.InvalidURL, ValueError) as exc:
        raise UsageError(f"http destination is not a valid URL: {exc}") from None
    if not url.host:
        raise UsageError("http destination has no host (http://HOST[:PORT]/PATH)")
    if not _HOST.fullmatch(url.host):
        raise UsageError("http destination is not a valid URL: its host is not a name or address")
    if port is not None and not 1 <= port <= 65535:
        raise UsageError(f"http destination port {port} is not 1 to 65535")
    return url


class HttpDriver:
    """POSTs each batch with one ``httpx.AsyncClient`` (keep-alive, no automatic retries)."""

    def __init__(
        self,
        settings: HttpSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        url = _parse_url(settings.url)
        self._url = url
        self._name = str(url.copy_with(query=None, fragment=None))
        logging.getLogger("httpx").addFilter(_REDACT_QUERIES)  # once: the same object
        self._clock = clock
        self._fixed_headers = self._build_headers()
        if transport is None:
            transport = httpx.AsyncHTTPTransport(
                verify=self._tls_context(),
                uds=settings.unix_socket,
                limits=httpx.Limits(
                    max_connections=settings.concurrency,
                    max_keepalive_connections=settings.concurrency,
                ),
            )
        read = settings.read_timeout
        timeout = httpx.Timeout(connect=settings.connect_timeout, read=read, write=read, pool=read)
        self._client = httpx.AsyncClient(
            transport=transport,
            timeout=timeout,
            follow_redirects=settings.follow_redirects,
            trust_env=False,
        )
        self._resume: tuple[Batch, int] | None = None  # single body: batch, events sent
        self._closed = False

    @property
    def name(self) -> str:
        """The URL without query or fragment (they may carry tokens)."""
        return self._name

    @property
    def concurrency(self) -> int:
        return self.settings.concurrency

    async def send(self, batch: Batch) -> None:
        if self._closed:
            raise DriverClosedError(f"{self.name}: send after close")
        settings = self.settings
        if settings.body == "single":
            await self._send_single(batch)
            return
        data = bytes(batch.data)
        if settings.body == "json-array":
            data = b"[" + data[:-1].replace(b"\n", b",") + b"]"
        await self._post(data, batch.key)

    async def flush(self) -> None:
        return None

    async def reopen(self) -> None:
        """Nothing to reopen: connections come and go with keep-alive."""
        return None

    async def aclose(self) -> None:
        self._closed = True
        await self._client.aclose()

    async def _send_single(self, batch: Batch) -> None:
        start = 0
        if self._resume is not None and self._resume[0] is batch:
            start = self._resume[1]
        self._resume = None
        events = list(batch.lines())
        for index in range(start, len(events)):
            try:
                key = batch.key if len(events) == 1 else f"{batch.key}-{index}"
                await self._post(events[index], key)
            except RetryableDeliveryError:
                self._resume = (batch, index)
                raise

    async def _post(self, data: bytes, key: str) -> None:
        settings = self.settings
        if settings.compression == "gzip":
            if len(data) < _GZIP_IN_THREAD_BYTES:
                data = _gzip(data, settings.gzip_level)
            else:  # zlib lets go of the GIL: the next batch is formatted meanwhile
                data = await anyio.to_thread.run_sync(_gzip, data, settings.gzip_level)
        headers = dict(self._fixed_headers)
        if settings.idempotency_header:
            headers[settings.idempotency_header] = key
        headers.update(self._signature(data, key))
        request = self._client.build_request("POST", self._url, content=data, headers=headers)
        try:
            with anyio.fail_after(settings.request_timeout):  # up to the status line
                response = await self._client.send(request, stream=True)
        except Exception as exc:
            raise classify_exception(exc, self.name, settings.request_timeout) from None
        try:
            await self._outcome(response)
        finally:
            with anyio.CancelScope(shield=True):
                await response.aclose()

    async def _outcome(self, response: httpx.Response) -> None:
        """Return if delivered; raise the classified error otherwise. The status decides:
        a body that cannot be read to its end changes nothing (the connection is then
        dropped rather than reused)."""
        status = response.status_code
        if response.history and any(hop.status_code in (301, 302, 303) for hop in response.history):
            raise PermanentDeliveryError(
                f"{self.name}: a {response.history[0].status_code} redirect would turn the POST "
                "into a bodyless GET: not followed (only 307 and 308 keep the body)"
            )
        if 200 <= status <= 299:
            with anyio.move_on_after(self.settings.read_timeout):
                try:
                    async for _ in response.aiter_raw():  # to the end: keeps the connection
                        pass
                except httpx.HTTPError:
                    pass
            return
        with anyio.move_on_after(self.settings.read_timeout):
            excerpt = await _body_excerpt(response)
        raise classify_status(
            status,
            response.reason_phrase,
            excerpt,
            name=self.name,
            retry_statuses=self.settings.retry_statuses,
            retry_after=response.headers.get("retry-after"),
            location=response.headers.get("location"),
            now=self._clock(),
        )

    def _build_headers(self) -> dict[str, str]:
        settings = self.settings
        headers = {"User-Agent": _USER_AGENT, "Content-Type": settings.content_type}
        if settings.compression == "gzip":
            headers["Content-Encoding"] = "gzip"
        headers.update(settings.headers)
        if settings.bearer_token is not None:
            headers["Authorization"] = "Bearer " + settings.bearer_token.reveal()
        elif settings.basic_user is not None and settings.basic_password is not None:
            pair = f"{settings.basic_user}:{settings.basic_password.reveal()}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
        return headers

    def _signature(self, body: bytes, key: str) -> dict[str, str]:
        settings = self.settings
        if settings.signing_key is None:
            return {}
        if settings.signing == "stalwart":
            return {"X-Signature": stalwart_signature(settings.signing_key, body)}
        timestamp = str(int(self._clock()))
        return {
            "webhook-id": key,
            "webhook-timestamp": timestamp,
            "webhook-signature": standard_webhooks_signature(
                settings.signing_key, key, timestamp, body
            ),
        }

    def _tls_context(self) -> ssl.SSLContext | bool:
        settings = self.settings
        if not settings.verify_tls:
            return False
        try:
            return ssl.create_default_context(cafile=settings.ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise UsageError(f"cannot load CA file {settings.ca_file}: {exc}") from None


def _gzip(data: bytes, level: int) -> bytes:
    return gzip.compress(data, compresslevel=level, mtime=0)


async def _body_excerpt(response: httpx.Response) -> str:
    """The first bytes of an error response's body, as text for a reason."""
    head = bytearray()  # kept if the read is cut short
    try:
        async for chunk in response.aiter_bytes():
            head += chunk
            if len(head) >= _ERROR_BODY_BYTES:
                break
    except httpx.HTTPError:
        pass  # the status is what matters; a body we cannot read adds nothing
    text = head[:_ERROR_BODY_BYTES].decode("utf-8", "replace")
    text = " ".join(text.split())
    return text + ("..." if len(head) > _ERROR_BODY_BYTES else "")


# -- signatures ----------------------------------------------------------------------


def stalwart_signature(key: Secret, body: bytes) -> str:
    """Stalwart's webhook ``X-Signature``: base64 of HMAC-SHA256(key, body)."""
    digest = hmac.new(key.reveal().encode(), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def standard_webhooks_signature(key: Secret, msg_id: str, timestamp: str, body: bytes) -> str:
    """Standard Webhooks ``webhook-signature``: ``v1,`` + base64 HMAC-SHA256 of
    ``id.timestamp.body``; a ``whsec_`` key is base64 after the prefix, as the spec says."""
    secret = key.reveal()
    raw = (
        base64.b64decode(secret.removeprefix("whsec_"))
        if secret.startswith("whsec_")
        else secret.encode()
    )
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(raw, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


# -- classification: the one place where statuses and foreign exceptions become ours ------


def classify_status(
    status: int,
    reason: str,
    excerpt: str,
    *,
    name: str,
    retry_statuses: frozenset[int],
    retry_after: str | None,
    location: str | None,
    now: float,
) -> DeliveryError:
    """The error for a response that is not 2xx."""
    message = f"{name}: HTTP {status} {reason}".rstrip()
    if 300 <= status <= 399 and location:
        where = location.split("?", 1)[0] + ("?***" if "?" in location else "")
        message += f" (redirect to {where} not followed)"
    if excerpt:
        message += f": {excerpt}"
    if status in retry_statuses:
        return RetryableDeliveryError(message, parse_retry_after(retry_after, now))
    return PermanentDeliveryError(message)


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from ``Retry-After``: delta-seconds (a fraction accepted) or an HTTP
    date; None if absent or unreadable (the backoff then decides)."""
    if value is None:
        return None
    value = value.strip()
    whole, dot, fraction = value.partition(".")  # RFC 9110 says whole seconds; take 1.5 too
    if whole.isdigit() and whole.isascii() and (not dot or fraction.isdigit()):
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # asctime form: an HTTP date is GMT even when it does not say so
        when = when.replace(tzinfo=datetime.UTC)
    return max(0.0, when.timestamp() - now)


_RETRYABLE_TRANSPORT = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
    httpx.ProxyError,
)


def classify_exception(exc: BaseException, name: str, request_timeout: float) -> DeliveryError:
    """Every exception a request can raise, as a DeliveryError.

    Retryable: timeouts, connect/read/write/close failures (TLS handshakes included), a
    server that breaks HTTP or closes mid-response, a proxy failure, and our own
    whole-request deadline. Permanent: what no retry can change (an unsupported scheme,
    a request httpx refuses to write, too many redirects, a bug in how a stream is used).
    """
    detail = _detail(exc)
    if isinstance(exc, TimeoutError):
        return RetryableDeliveryError(f"{name}: no response within {request_timeout} s")
    if isinstance(exc, httpx.TimeoutException):  # its text is anyio's cancel-scope noise
        return RetryableDeliveryError(f"{name}: {_kind(exc)}")
    if isinstance(exc, httpx.LocalProtocolError):  # its text may quote a header (a token)
        return PermanentDeliveryError(f"{name}: the request could not be written (a header?)")
    if isinstance(exc, _RETRYABLE_TRANSPORT):
        return RetryableDeliveryError(f"{name}: {_kind(exc)}: {detail}")
    if isinstance(exc, OSError):
        return RetryableDeliveryError(f"{name}: {detail}")
    return PermanentDeliveryError(f"{name}: {_kind(exc)}: {detail}")


def _detail(exc: BaseException) -> str:
    """The first non-empty message down the chain: httpx's ReadError('') wraps
    httpcore's, which wraps ``[Errno 104] Connection reset by peer``."""
    node: BaseException | None = exc
    for _ in range(8):  # chains are short; never loop on a cycle
        if node is None:
            break
        if str(node):
            return str(node)
        node = node.__cause__ or node.__context__
    return type(exc).__name__


def _kind(exc: BaseException) -> str:
    """``ConnectError`` -> ``connect error``: the httpx class, readable."""
    words: list[str] = []
    for char in type(exc).__name__:
        if char.isupper() and words:
            words.append(" ")
        words.append(char.lower())
    return "".join(words)
