"""The http-post driver against pytest-httpx: bodies, classification, Retry-After,
compression, auth, signatures, idempotency keys and secrets kept out of every message."""

from __future__ import annotations

import base64
import email.utils
import gzip
import hashlib
import http.server
import logging
import os
import re
import socketserver
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import anyio.abc
import httpx
import orjson
import pytest
import trustme
from hypothesis import given, settings
from hypothesis import strategies as st
from pytest_httpx import HTTPXMock

from drivers.base import Batch
from drivers.http import (
    DEFAULT_RETRY_STATUSES,
    HttpDriver,
    HttpSettings,
    ReceiverText,
    classify_exception,
    classify_status,
    is_credential_header,
    is_loopback_host,
    parse_retry_after,
)
from exporter import __version__
from exporter.errors import (
    DeliveryError,
    DriverClosedError,
    PermanentDeliveryError,
    RetryableDeliveryError,
    UsageError,
)
from exporter.secret import Secret
from tests.support.drivers import socket_dir

pytestmark = pytest.mark.anyio
URL = "http://127.0.0.1:9/ingest"
NOW = 1_795_304_520.0
TOKEN = "tok-3f9a-SECRET-never-printed"


def _batch(*events: bytes) -> Batch:
    batch = Batch()
    for event in events:
        batch.append(event + b"\n")
    return batch


EVENTS = (b'{"event":"a","fields":{"n":1}}', b'{"event":"b","fields":{"user":"\\u00e9"}}')


def _driver(**settings: object) -> HttpDriver:
    values: dict[str, object] = {"url": URL, **settings}
    return HttpDriver(HttpSettings(**values), clock=lambda: NOW)  # type: ignore[arg-type]


async def _send(driver: HttpDriver, batch: Batch) -> None:
    with anyio.fail_after(10):
        await driver.send(batch)


# -- bodies ----------------------------------------------------------------------------


async def test_ndjson_body_is_the_batch_as_it_is(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(status_code=204)
    driver = _driver()
    await _send(driver, _batch(*EVENTS))
    request = httpx_mock.get_request()
    assert request is not None
    assert request.method == "POST"
    assert str(request.url) == URL
    assert request.content == EVENTS[0] + b"\n" + EVENTS[1] + b"\n"
    assert request.headers["content-type"] == "application/x-ndjson"
    assert request.headers["content-length"] == str(len(request.content))
    assert "content-encoding" not in request.headers
    await driver.aclose()


async def test_an_ndjson_body_of_tab_text_lines_is_text_plain(httpx_mock: HTTPXMock) -> None:
    """Issue 14, item 9: tab-text batches went out as application/x-ndjson, which they
    are not (no line is JSON)."""
    httpx_mock.add_response(status_code=204)
    driver = _driver(event_format="tab-text")
    await _send(driver, _batch(b"event:a\tfield:n=1", b"event:b"))
    request = httpx_mock.get_request()
    assert request is not None
    assert request.content == b"event:a\tfield:n=1\nevent:b\n"
    assert request.headers["content-type"] == "text/plain"
    await driver.aclose()


async def test_json_array_body(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(status_code=200)
    driver = _driver(body="json-array")
    await _send(driver, _batch(*EVENTS))
    request = httpx_mock.get_request()
    assert request is not None
    assert request.content == b"[" + EVENTS[0] + b"," + EVENTS[1] + b"]"
    assert orjson.loads(request.content) == [orjson.loads(e) for e in EVENTS]
    assert request.headers["content-type"] == "application/json"
    await driver.aclose()


def test_json_array_needs_json_events() -> None:
    with pytest.raises(UsageError, match="json-array needs json"):
        HttpSettings(url=URL, body="json-array", event_format="tab-text")


@pytest.mark.parametrize(
    ("event_format", "content_type", "events"),
    [
        ("json", "application/json", EVENTS),
        ("tab-text", "text/plain", (b"event:a\tfield:n=1", b"event:b\thostname:h")),
    ],
)
async def test_single_is_dovecots_request_one_per_event(
    httpx_mock: HTTPXMock, event_format: str, content_type: str, events: tuple[bytes, ...]
) -> None:
    """Dovecot's http-post body: the event without newline, its format's Content-Type."""
    httpx_mock.add_response(status_code=200, is_reusable=True)
    driver = _driver(body="single", event_format=event_format)
    await _send(driver, _batch(*events))
    requests = httpx_mock.get_requests()
    assert [r.content for r in requests] == list(events)
    assert {r.headers["content-type"] for r in requests} == {content_type}
    await driver.aclose()


async def test_single_resumes_a_batch_after_the_events_already_taken(
    httpx_mock: HTTPXMock,
) -> None:
    httpx_mock.add_response(status_code=204)
    httpx_mock.add_response(status_code=503)
    httpx_mock.add_response(status_code=204, is_reusable=True)
    driver = _driver(body="single")
    batch = _batch(b"{}", b"[1]", b"[2]")
    with pytest.raises(RetryableDeliveryError):
        await _send(driver, batch)
    await _send(driver, batch)
    assert [r.content for r in httpx_mock.get_requests()] == [b"{}", b"[1]", b"[1]", b"[2]"]
    await driver.aclose()


@pytest.mark.parametrize("count", [500, 5000], ids=["inline", "in-a-thread"])
async def test_gzip_body_decompresses_to_the_exact_ndjson(
    httpx_mock: HTTPXMock, count: int
) -> None:
    """Below 64 KiB the body is compressed inline, above in a worker thread."""
    httpx_mock.add_response(status_code=204)
    driver = _driver(compression="gzip", gzip_level=6)
    events = [b'{"event":"e","fields":{"n":%d}}' % n for n in range(count)]
    await _send(driver, _batch(*events))
    request = httpx_mock.get_request()
    assert request is not None
    assert request.headers["content-encoding"] == "gzip"
    assert request.headers["content-type"] == "application/x-ndjson"
    assert len(request.content) < len(b"\n".join(events)) // 4
    assert gzip.decompress(request.content) == b"".join(e + b"\n" for e in events)
    await driver.aclose()


# -- classification ------------------------------------------------------------------------

DELIVERED = [200, 201, 202, 204, 299]
RETRIED = sorted(DEFAULT_RETRY_STATUSES)
PERMANENT = [400, 401, 403, 404, 409, 413, 422, 431, 451, 501, 505, 511, 599]


@pytest.mark.parametrize("status", DELIVERED)
async def test_2xx_is_delivered(httpx_mock: HTTPXMock, status: int) -> None:
    httpx_mock.add_response(status_code=status, text="ok")
    driver = _driver()
    await _send(driver, _batch(b"{}"))
    await driver.aclose()


@pytest.mark.parametrize("status", RETRIED)
async def test_retried_statuses(httpx_mock: HTTPXMock, status: int) -> None:
    assert RETRIED == [408, 425, 429, 500, 502, 503, 504]
    httpx_mock.add_response(status_code=status, text="busy, come back later")
    driver = _driver()
    with pytest.raises(RetryableDeliveryError) as caught:
        await _send(driver, _batch(b"{}"))
    assert f"HTTP {status}" in str(caught.value)
    assert "busy, come back later" in str(caught.value)
    assert caught.value.retry_after is None  # no Retry-After: the backoff decides
    await driver.aclose()


@pytest.mark.parametrize("status", PERMANENT)
async def test_other_statuses_are_permanent_with_status_and_body_excerpt(
    httpx_mock: HTTPXMock, status: int
) -> None:
    body = "field 'user' is required\n" + "x" * 1000
    httpx_mock.add_response(status_code=status, text=body)
    driver = _driver()
    with pytest.raises(PermanentDeliveryError) as caught:
        await _send(driver, _batch(b"{}"))
    message = str(caught.value)
    assert message.startswith(f"{URL}: HTTP {status}")
    assert "field 'user' is required" in message
    assert message.endswith("...")
    assert len(message) < 320  # the first bytes of the body, not all of it
    await driver.aclose()


async def test_a_redirect_is_not_followed_unless_enabled(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(status_code=308, headers={"Location": "http://127.0.0.1:9/v2"})
    driver = _driver()
    with pytest.raises(
        PermanentDeliveryError,
        match=r"308 Permanent Redirect: redirected to http://127.0.0.1:9/v2, not followed "
        r"\(follow_redirects is off\)",
    ):
        await _send(driver, _batch(b"{}"))
    await driver.aclose()

    httpx_mock.add_response(status_code=308, headers={"Location": "http://127.0.0.1:9/v2"})
    httpx_mock.add_response(url="http://127.0.0.1:9/v2", status_code=204)
    driver = _driver(follow_redirects=True)
    await _send(driver, _batch(b"{}"))
    assert [str(r.url) for r in httpx_mock.get_requests()][-2:] == [URL, "http://127.0.0.1:9/v2"]
    await driver.aclose()


def test_the_retried_statuses_are_configurable() -> None:
    settings = HttpSettings(url=URL, retry_statuses=frozenset({409}))
    assert settings.retry_statuses == {409}
    with pytest.raises(UsageError, match="204"):
        HttpSettings(url=URL, retry_statuses=frozenset({204}))


async def test_a_configured_retry_status_is_retried(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(status_code=409)
    httpx_mock.add_response(status_code=503)
    driver = _driver(retry_statuses=frozenset({409}))
    with pytest.raises(RetryableDeliveryError):
        await _send(driver, _batch(b"{}"))
    with pytest.raises(PermanentDeliveryError):
        await _send(driver, _batch(b"{}"))
    await driver.aclose()


def _exception(cls: type[Exception]) -> Exception:
    """An instance of any httpx exception class, whatever its constructor wants."""
    exc = cls.__new__(cls)
    Exception.__init__(exc, f"simulated {cls.__name__}")
    return exc


HTTPX_EXCEPTIONS = [
    getattr(httpx, name)
    for name in httpx.__all__
    if isinstance(getattr(httpx, name), type) and issubclass(getattr(httpx, name), Exception)
]
RETRYABLE_HTTPX = {
    "TimeoutException",
    "ConnectTimeout",
    "ReadTimeout",
    "WriteTimeout",
    "PoolTimeout",
    "NetworkError",
    "ConnectError",
    "ReadError",
    "WriteError",
    "CloseError",
    "RemoteProtocolError",
    "ProxyError",
}


def test_every_public_httpx_exception_is_classified() -> None:
    assert len(HTTPX_EXCEPTIONS) >= 25  # the list is httpx's own, not ours
    for cls in HTTPX_EXCEPTIONS:
        error = classify_exception(_exception(cls), "http://x/", 60)
        expected = RetryableDeliveryError if cls.__name__ in RETRYABLE_HTTPX else None
        if expected is None:
            assert type(error) is PermanentDeliveryError, cls
        else:
            assert type(error) is expected, cls
        quiet = issubclass(cls, (httpx.TimeoutException, httpx.LocalProtocolError))
        # A timeout's text is anyio's cancel-scope noise; a local protocol error's may
        # quote a header holding a token: neither is repeated.
        assert (f"simulated {cls.__name__}" in str(error)) is not quiet, cls
    # A transport failure httpx did not wrap, and our whole-request deadline:
    assert type(classify_exception(ConnectionResetError(104, "reset"), "u", 1)) is (
        RetryableDeliveryError
    )
    assert "no response within 1.5 s" in str(classify_exception(TimeoutError(), "u", 1.5))


@pytest.mark.parametrize(
    ("exc", "said"),
    [
        (httpx.ConnectError("refused"), "connect error: refused"),
        (httpx.ReadTimeout("cancel scope noise"), "read timeout$"),
        (httpx.RemoteProtocolError("eof"), "remote protocol error: eof"),
    ],
)
async def test_transport_failures_are_retryable(
    httpx_mock: HTTPXMock, exc: Exception, said: str
) -> None:
    httpx_mock.add_exception(exc)
    driver = _driver()
    with pytest.raises(RetryableDeliveryError, match=said):
        await _send(driver, _batch(b"{}"))
    await driver.aclose()


class _Hanging(httpx.AsyncBaseTransport):
    """A server that takes the request and never answers."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await anyio.sleep_forever()
        raise AssertionError("unreachable")


async def test_the_whole_request_deadline_is_retryable() -> None:
    driver = HttpDriver(HttpSettings(url=URL, request_timeout=0.05), transport=_Hanging())
    with pytest.raises(RetryableDeliveryError, match=r"no response within 0.05 s"):
        await _send(driver, _batch(b"{}"))
    await driver.aclose()


# -- Retry-After ---------------------------------------------------------------------------


async def test_retry_after_in_seconds(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(status_code=429, headers={"Retry-After": "7"})
    driver = _driver()
    with pytest.raises(RetryableDeliveryError) as caught:
        await _send(driver, _batch(b"{}"))
    assert caught.value.retry_after == 7.0
    await driver.aclose()


async def test_retry_after_as_an_http_date(httpx_mock: HTTPXMock) -> None:
    when = email.utils.formatdate(NOW + 120, usegmt=True)
    httpx_mock.add_response(status_code=503, headers={"Retry-After": when})
    driver = _driver()
    with pytest.raises(RetryableDeliveryError) as caught:
        await _send(driver, _batch(b"{}"))
    assert caught.value.retry_after == 120.0
    await driver.aclose()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", 0.0),
        (" 30 ", 30.0),
        ("Sat, 21 Nov 2026 23:42:00 GMT", 0.0),  # in the past: at once
        ("Sun, 06 Nov 1994 08:49:37 GMT", 0.0),
        ("Sat Nov 21 23:44:00 2026", 120.0),  # asctime form, GMT
        ("Sunday, 22-Nov-26 00:42:00 GMT", 3600.0),  # RFC 850 form
        ("-5", None),
        ("1.5", 1.5),
        ("1.", None),
        (".5", None),
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_values(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, NOW) == expected


async def test_retry_after_on_a_permanent_status_is_ignored(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(status_code=400, headers={"Retry-After": "5"})
    driver = _driver()
    with pytest.raises(PermanentDeliveryError):
        await _send(driver, _batch(b"{}"))
    await driver.aclose()


# -- headers, auth, idempotency keys ----------------------------------------------------


async def test_idempotency_key_is_stable_across_retries_and_differs_between_batches(
    httpx_mock: HTTPXMock,
) -> None:
    httpx_mock.add_response(status_code=500)
    httpx_mock.add_response(status_code=204, is_reusable=True)
    driver = _driver()
    first, second = _batch(b"{}"), _batch(b"{}")
    with pytest.raises(RetryableDeliveryError):
        await _send(driver, first)
    await _send(driver, first)
    await _send(driver, second)
    keys = [r.headers["idempotency-key"] for r in httpx_mock.get_requests()]
    assert keys == [first.key, first.key, second.key]
    assert first.key != second.key
    await driver.aclose()


async def test_custom_headers_and_no_idempotency_header(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(status_code=204)
    driver = _driver(headers={"X-Source": "imap01"}, idempotency_header="")
    await _send(driver, _batch(b"{}"))
    request = httpx_mock.get_request()
    assert request is not None
    assert request.headers["x-source"] == "imap01"
    assert request.headers["user-agent"] == f"event-exporter/{__version__}"
    assert "idempotency-key" not in request.headers
    await driver.aclose()


async def test_bearer_token_from_the_environment(
    httpx_mock: HTTPXMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EE_TOKEN", TOKEN)
    httpx_mock.add_response(status_code=204)
    driver = _driver(bearer_token=Secret.from_env("EE_TOKEN"))
    await _send(driver, _batch(b"{}"))
    request = httpx_mock.get_request()
    assert request is not None
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    await driver.aclose()


async def test_basic_auth_with_the_password_from_a_file(
    httpx_mock: HTTPXMock, tmp_path: Path
) -> None:
    (tmp_path / "password").write_text(TOKEN + "\n")
    httpx_mock.add_response(status_code=204)
    driver = _driver(
        basic_user="dovecot", basic_password=Secret.from_file(str(tmp_path / "password"))
    )
    await _send(driver, _batch(b"{}"))
    request = httpx_mock.get_request()
    assert request is not None
    expected = base64.b64encode(f"dovecot:{TOKEN}".encode()).decode()
    assert request.headers["authorization"] == f"Basic {expected}"
    await driver.aclose()


async def test_secrets_appear_in_no_message_log_line_or_repr(
    httpx_mock: HTTPXMock, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EE_TOKEN", TOKEN)
    monkeypatch.setenv("EE_KEY", TOKEN + "-key")
    caplog.set_level(logging.DEBUG)
    settings = HttpSettings(
        url=URL + "?api_key=" + TOKEN,
        bearer_token=Secret.from_env("EE_TOKEN"),
        signing="stalwart",
        signing_key=Secret.from_env("EE_KEY"),
    )
    driver = HttpDriver(settings)
    texts = [repr(settings), str(settings), driver.name]
    httpx_mock.add_response(status_code=401, text="bad token")
    httpx_mock.add_response(status_code=503)
    httpx_mock.add_exception(httpx.ConnectError("refused"))
    httpx_mock.add_response(status_code=204)
    for _ in range(3):
        with pytest.raises(DeliveryError) as caught:
            await _send(driver, _batch(b"{}"))
        texts.append(str(caught.value))
    await _send(driver, _batch(b"{}"))
    await driver.aclose()
    texts += [record.getMessage() for record in caplog.records]
    assert any("HTTP 401" in text for text in texts)
    assert len(caplog.records) > 0  # httpx did log the requests
    for text in texts:
        assert TOKEN not in text


def test_credentials_in_the_url_are_refused() -> None:
    with pytest.raises(UsageError, match="credentials in the URL") as caught:
        HttpSettings(url=f"http://user:{TOKEN}@127.0.0.1/")
    assert TOKEN not in str(caught.value)


def test_secret_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EE_MISSING", raising=False)
    with pytest.raises(UsageError, match="EE_MISSING is not set"):
        Secret.from_env("EE_MISSING")
    with pytest.raises(UsageError, match="cannot read secret file"):
        Secret.from_file(str(tmp_path / "absent"))
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(UsageError, match="is empty"):
        Secret.from_file(str(tmp_path / "empty"))
    assert Secret.load() is None
    with pytest.raises(UsageError, match="not both"):
        Secret.load(env="A", file="B")
    assert "***" in repr(Secret(TOKEN))
    assert TOKEN not in repr(Secret(TOKEN))


# -- signatures, against an independent HMAC ---------------------------------------------


def _hmac_sha256(key: bytes, message: bytes) -> bytes:
    """RFC 2104 by hand (not the hmac module the driver uses)."""
    if len(key) > 64:
        key = hashlib.sha256(key).digest()
    key = key.ljust(64, b"\0")
    inner = hashlib.sha256(bytes(k ^ 0x36 for k in key) + message).digest()
    return hashlib.sha256(bytes(k ^ 0x5C for k in key) + inner).digest()


def test_the_independent_hmac_matches_rfc_4231() -> None:
    digest = _hmac_sha256(b"Jefe", b"what do ya want for nothing?")
    assert digest.hex() == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"


async def test_stalwart_signature_of_the_exact_body_sent(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(status_code=204)
    driver = _driver(signing="stalwart", signing_key=Secret("webhook-key"), compression="gzip")
    await _send(driver, _batch(*EVENTS))
    request = httpx_mock.get_request()
    assert request is not None
    expected = base64.b64encode(_hmac_sha256(b"webhook-key", request.content)).decode()
    assert request.headers["x-signature"] == expected
    await driver.aclose()


@pytest.mark.parametrize("key", ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "plain-key"])
async def test_standard_webhooks_signature(httpx_mock: HTTPXMock, key: str) -> None:
    httpx_mock.add_response(status_code=500)
    httpx_mock.add_response(status_code=204)
    now = [NOW]
    driver = HttpDriver(
        HttpSettings(url=URL, signing="standard-webhooks", signing_key=Secret(key)),
        clock=lambda: now[0],
    )
    batch = _batch(*EVENTS)
    with pytest.raises(RetryableDeliveryError):
        await _send(driver, batch)
    now[0] = NOW + 30
    await _send(driver, batch)
    raw = base64.b64decode(key[6:]) if key.startswith("whsec_") else key.encode()
    stamps = []
    for request in httpx_mock.get_requests():
        msg_id = request.headers["webhook-id"]
        stamp = request.headers["webhook-timestamp"]
        signed = f"{msg_id}.{stamp}.".encode() + request.content
        expected = "v1," + base64.b64encode(_hmac_sha256(raw, signed)).decode()
        assert request.headers["webhook-signature"] == expected
        assert msg_id == batch.key
        stamps.append(stamp)
    assert stamps == [str(int(NOW)), str(int(NOW + 30))]  # signed again at each attempt
    await driver.aclose()


def test_signing_needs_a_key_and_a_key_needs_signing() -> None:
    with pytest.raises(UsageError, match="go together"):
        HttpSettings(url=URL, signing="stalwart")
    with pytest.raises(UsageError, match="go together"):
        HttpSettings(url=URL, signing_key=Secret("k"))


# -- the driver contract bits this driver adds -------------------------------------------


async def test_name_hides_query_and_send_after_close_fails(httpx_mock: HTTPXMock) -> None:
    driver = _driver(url=URL + "?token=x#frag")
    assert driver.name == URL
    await driver.flush()
    await driver.reopen()
    await driver.aclose()
    await driver.aclose()
    with pytest.raises(DriverClosedError):
        await _send(driver, _batch(b"{}"))


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"url": "ftp://x/"}, "scheme must be http or https"),
        ({"body": "xml"}, "unknown http body"),
        ({"compression": "br"}, "unknown compression"),
        ({"gzip_level": 10}, "gzip level"),
        ({"read_timeout": 0}, "read timeout must be positive"),
        ({"concurrency": 0}, "concurrency"),
        ({"headers": {"X-A": "1\r\nX-B: 2"}}, "a value is printable ASCII"),
        ({"headers": {"X-A": "café"}}, "a value is printable ASCII"),
        ({"headers": {"Bad Name": "1"}}, "a name is letters"),
        ({"idempotency_header": "Bad Header"}, "not a header name"),
        ({"bearer_token": Secret("tok\n\n")}, "a second line"),
        ({"basic_user": "u"}, "basic auth needs both"),
        (
            {"bearer_token": Secret("t"), "basic_user": "u", "basic_password": Secret("p")},
            "not both",
        ),
    ],
)
def test_bad_settings_say_what_is_allowed(settings: dict[str, object], message: str) -> None:
    values: dict[str, object] = {"url": URL, **settings}
    with pytest.raises(UsageError, match=message):
        HttpSettings(**values)  # type: ignore[arg-type]


# -- HTTP over a unix socket, for real --------------------------------------------------


class _UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class _Collect(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    bodies: list[tuple[str, str, bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.bodies.append((self.path, self.headers["Host"], body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return None


@contextmanager
def _serving(server: socketserver.BaseServer) -> Iterator[None]:
    """``server`` answering in a thread until the block ends; then stopped and joined."""
    _Collect.bodies = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


async def test_http_over_a_unix_socket() -> None:
    with socket_dir() as directory:
        path = os.path.join(directory, "collector.sock")
        with _serving(_UnixHTTPServer(path, _Collect)):
            driver = HttpDriver(HttpSettings(url="http://collector/ingest", unix_socket=path))
            await _send(driver, _batch(*EVENTS))
            await _send(driver, _batch(b"{}"))
            await driver.aclose()
    assert _Collect.bodies == [
        ("/ingest", "collector", EVENTS[0] + b"\n" + EVENTS[1] + b"\n"),
        ("/ingest", "collector", b"{}\n"),
    ]


# -- TLS: verified by default, with a CA file ---------------------------------------------


class _TLSServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


async def test_https_verifies_the_server_and_trusts_a_given_ca_file(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    server = _TLSServer(("127.0.0.1", 0), _Collect)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_context)
    server.socket = server_context.wrap_socket(server.socket, server_side=True)
    url = f"https://127.0.0.1:{server.server_address[1]}/ingest"
    with _serving(server):
        unknown = HttpDriver(HttpSettings(url=url))  # the system's CAs: ours is unknown
        with pytest.raises(RetryableDeliveryError, match="CERTIFICATE_VERIFY_FAILED"):
            await _send(unknown, _batch(b"{}"))
        await unknown.aclose()
        trusted = HttpDriver(HttpSettings(url=url, ca_file=str(ca_file)))
        await _send(trusted, _batch(b"{}"))
        await trusted.aclose()
    assert [body for _, _, body in _Collect.bodies] == [b"{}\n"]


def test_a_missing_or_unreadable_ca_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="CA file .*absent.pem does not exist"):
        HttpSettings(url="https://127.0.0.1/", ca_file=str(tmp_path / "absent.pem"))
    (tmp_path / "garbage.pem").write_text("not a certificate\n")
    with pytest.raises(UsageError, match="cannot load CA file"):
        HttpDriver(HttpSettings(url="https://127.0.0.1/", ca_file=str(tmp_path / "garbage.pem")))


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://[x/?token=SECRET", "not a valid URL"),
        ("http://x:99999/?token=SECRET", "not a valid URL|port 99999"),
        ("http:///path?token=SECRET", "no host"),
    ],
)
def test_bad_urls_are_refused_without_repeating_them(url: str, message: str) -> None:
    with pytest.raises(UsageError, match=message) as caught:
        HttpSettings(url=url)
    assert "SECRET" not in str(caught.value)


async def test_a_301_that_would_turn_the_post_into_a_get_is_permanent(
    httpx_mock: HTTPXMock,
) -> None:
    httpx_mock.add_response(status_code=301, headers={"Location": "http://127.0.0.1:9/get"})
    driver = _driver(follow_redirects=True)
    with pytest.raises(
        PermanentDeliveryError,
        match="redirected to http://127.0.0.1:9/get, not followed: a 301 would turn the POST",
    ):
        await _send(driver, _batch(b"{}"))
    assert len(httpx_mock.get_requests()) == 1  # no GET was made
    await driver.aclose()


def test_a_redirect_location_is_named_without_its_query() -> None:
    error = classify_status(
        302,
        "Found",
        "",
        name="http://x/in",
        retry_statuses=DEFAULT_RETRY_STATUSES,
        retry_after=None,
        location="https://x/in?token=SECRET",
        now=NOW,
    )
    assert "HTTP 302 Found: redirected to https://x/in?***, not followed" in str(error)
    assert "SECRET" not in str(error)


async def test_a_2xx_whose_body_breaks_off_is_delivered_once() -> None:
    """The status decides: a body cut short after 200 is not a reason to send again."""
    requests = [0]

    async def serve(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            requests[0] += 1
            data = b""
            while b"\r\n\r\n" not in data:  # bounded by the client's small request
                data += await stream.receive()
            await stream.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort")

    with anyio.fail_after(10):
        async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener:
            port = listener.extra(anyio.abc.SocketAttribute.local_port)
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(listener.serve, serve)
                driver = HttpDriver(HttpSettings(url=f"http://127.0.0.1:{port}/in"))
                await driver.send(_batch(b"{}"))
                await driver.aclose()
                tasks.cancel_scope.cancel()
    assert requests == [1]


# -- credentials over plain http -------------------------------------------------------------

CREDENTIALS: list[dict[str, object]] = [
    {"bearer_token": Secret(TOKEN)},
    {"basic_user": "u", "basic_password": Secret(TOKEN)},
    {"signing": "stalwart", "signing_key": Secret(TOKEN)},
    {"headers": {"X-Api-Key": TOKEN}},
]


@pytest.mark.parametrize("credentials", CREDENTIALS)
def test_credentials_over_plain_http_to_another_host_are_refused(
    credentials: dict[str, object],
) -> None:
    """Regression: credentials went over plain http:// to any host, without a word."""
    for url in ("http://collector.example/in", "http://10.0.0.7:8080/in", "http://[2001:db8::1]/"):
        with pytest.raises(UsageError, match="would travel in clear") as caught:
            HttpSettings(url=url, **credentials)  # type: ignore[arg-type]
        message = str(caught.value)
        assert "allow_plain_http = true, --http-allow-plain-http" in message
        assert TOKEN not in message
        allowed = HttpSettings(url=url, allow_plain_http=True, **credentials)  # type: ignore[arg-type]
        assert [key for key, _ in allowed.warnings()] == ["allow_plain_http"]
        assert "travels in clear" in allowed.warnings()[0][1]


@pytest.mark.parametrize("credentials", CREDENTIALS)
@pytest.mark.parametrize(
    ("url", "unix_socket"),
    [
        ("https://collector.example/in", None),
        ("http://127.0.0.1:9/in", None),
        ("http://127.8.9.10/in", None),
        ("http://localhost:9/in", None),
        ("http://LOCALHOST/in", None),
        ("http://[::1]:9/in", None),
        ("http://[::ffff:127.0.0.1]/in", None),
        ("http://collector/in", "/run/collector.sock"),
    ],
)
def test_credentials_to_a_local_host_or_over_https_are_fine(
    credentials: dict[str, object], url: str, unix_socket: str | None
) -> None:
    settings = HttpSettings(url=url, unix_socket=unix_socket, **credentials)  # type: ignore[arg-type]
    assert settings.sent_in_clear == ()
    assert settings.warnings() == []


def test_plain_http_without_credentials_needs_nothing() -> None:
    settings = HttpSettings(url="http://collector.example/in", headers={"X-Source": "imap01"})
    assert settings.credentials == ()
    assert settings.warnings() == []


def test_tls_not_verified_is_a_warning() -> None:
    settings = HttpSettings(
        url="https://collector.example/in", verify_tls=False, bearer_token=Secret(TOKEN)
    )
    assert settings.warnings() == [
        (
            "verify_tls",
            "false: the server's certificate is not checked, so whoever is on the path can "
            "read and change what is sent (bearer token included)",
        )
    ]


@pytest.mark.parametrize(
    ("name", "credential"),
    [
        ("Authorization", True),
        ("proxy-authorization", True),
        ("Cookie", True),
        ("X-Api-Key", True),
        ("X-API-KEY", True),
        ("api_key", True),
        ("X-ApiKey", True),
        ("X-Auth-Token", True),
        ("X-Access-Key", True),
        ("X-Webhook-Secret", True),
        ("X-Client-Secrets", True),
        ("X-Password", True),
        ("X-Auth", True),
        ("X-Authentication", True),
        ("X-Source", False),
        ("Idempotency-Key", False),
        ("X-Routing-Key", False),
        ("X-Tokenizer", False),
        ("Content-Language", False),
    ],
)
def test_which_headers_carry_credentials(name: str, credential: bool) -> None:
    assert is_credential_header(name) is credential


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.255.0.9", True),
        ("::1", True),
        ("[::1]", True),
        ("::ffff:127.0.0.2", True),
        ("localhost", True),
        ("LocalHost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("", False),
        ("128.0.0.1", False),
        ("localhost.example", False),
        ("10.1.2.3", False),
    ],
)
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


# -- Standard Webhooks keys --------------------------------------------------------------------


@pytest.mark.parametrize("key", ["whsec_not base64!", "whsec_", "whsec_é", "whsec_YWJ"])
def test_a_whsec_key_that_is_not_base64_is_refused_when_the_settings_are_made(key: str) -> None:
    """Regression: such a key passed every check and made every batch a dead letter."""
    with pytest.raises(UsageError, match="starts with whsec_ but what follows is not base64"):
        HttpSettings(url=URL, signing="standard-webhooks", signing_key=Secret(key))
    HttpSettings(url=URL, signing="stalwart", signing_key=Secret(key))  # Stalwart: any text


# -- receiver text -----------------------------------------------------------------------------

SECRETS = ("tok-3f9a-SECRET", "p4ss w0rd", "k")


@settings(max_examples=150)
@given(
    pieces=st.lists(st.one_of(st.text(max_size=40), st.sampled_from(SECRETS)), max_size=30),
    cut=st.integers(min_value=0, max_value=600),
)
def test_receiver_text_never_shows_a_control_character_or_a_whole_secret(
    pieces: list[str], cut: int
) -> None:
    text = "".join(pieces)
    shown = ReceiverText(SECRETS[:2]).shown(text[:cut], cut=len(text) > cut)
    assert not re.search(r"[\x00-\x1f\x7f-\x9f]", shown)
    for secret in SECRETS[:2]:
        assert secret not in shown
    assert len(shown) <= 200 * 6 + 3


def test_receiver_text_hides_a_secret_cut_at_its_end() -> None:
    text = ReceiverText(["tok-3f9a-SECRET"])
    assert text.shown("error: tok-3f9a-SEC", cut=True) == "error: ***..."
    assert text.shown("error: tok", cut=True) == "error: tok..."  # 3 characters: a word
    assert text.shown("error: tok-3f9a-SEC") == "error: tok-3f9a-SEC"  # whole text: not ours
    assert text.shown("a\tb\n\nc\x1b[0m" + "x" * 300).startswith("a b c\\x1b[0mxxx")


def test_the_url_query_is_a_secret_for_receiver_text() -> None:
    settings = HttpSettings(url=URL + "?api_key=abcdefgh12&n=1")
    text = ReceiverText.of(settings)
    assert text.shown("no route /ingest?api_key=abcdefgh12&n=1") == "no route /ingest?***"
    assert text.shown("key abcdefgh12 unknown, n=1") == "key *** unknown, n=1"


async def test_httpx_log_lines_hide_secrets_the_receiver_echoes_in_its_reason_phrase(
    httpx_mock: HTTPXMock, caplog: pytest.LogCaptureFixture
) -> None:
    """httpx logs each response's reason phrase at INFO (a receiver's text)."""
    caplog.set_level(logging.INFO, logger="httpx")
    httpx_mock.add_callback(
        lambda request: httpx.Response(401, extensions={"reason_phrase": f"no {TOKEN}".encode()})
    )
    driver = _driver(bearer_token=Secret(TOKEN))
    with pytest.raises(PermanentDeliveryError, match=r"HTTP 401 no \*\*\*$"):
        await _send(driver, _batch(b"{}"))
    await driver.aclose()
    logged = [record.getMessage() for record in caplog.records]
    assert any('401 no ***"' in line for line in logged), logged
    assert not any(TOKEN in line for line in logged)


async def test_an_exceptions_text_is_receiver_text(httpx_mock: HTTPXMock) -> None:
    """A protocol error quotes what the receiver sent (its status line)."""
    httpx_mock.add_exception(httpx.RemoteProtocolError(f"illegal status line: \x1b[2J {TOKEN}"))
    driver = _driver(bearer_token=Secret(TOKEN))
    with pytest.raises(
        RetryableDeliveryError,
        match=r"remote protocol error: illegal status line: \\x1b\[2J \*\*\*$",
    ):
        await _send(driver, _batch(b"{}"))
    await driver.aclose()
