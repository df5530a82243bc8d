"""The http driver against a hostile receiver (tests/http_receiver.py on 127.0.0.1): its
text is data, not markup, and never publishes our secrets; its redirects never take the
body, headers or signature to another origin; credentials do not travel in clear.

What a receiver controls -- the error body, the reason phrase, a Location, the text of a
failure -- reaches messages, log lines and dead-letter reasons escaped (no control
character), capped, and with any of our secrets it echoes replaced by ``***``.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path

import anyio
import orjson
import pytest

from drivers.base import Batch
from drivers.http import HttpDriver, HttpSettings
from exporter.cli import main
from exporter.errors import DeliveryError, PermanentDeliveryError, RetryableDeliveryError
from exporter.secret import Secret
from tests.support.http_receiver import Receiver, Respond
from tests.support.processes import bounded, dead_letter_events
from tests.support.samples import EVENTS_FILE

TOKEN = "tok-3f9a-SECRET-never-printed"
PASSWORD = "pw-51ab-SECRET-never-printed"
KEY = "key-77c0-SECRET-never-printed"
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
ESCAPES = "\x1b[2J\x1b[1;31mPWNED\x1b]0;title\x07\r\nforged: log line\u202eevil"


def _batch(*events: bytes) -> Batch:
    batch = Batch()
    for event in events:
        batch.append(event + b"\n")
    return batch


EVENT = b'{"event":"e","fields":{"n":"0000001"}}'


def _driver(url: str, **settings: object) -> HttpDriver:
    values: dict[str, object] = {"url": url, "read_timeout": 5.0, **settings}
    return HttpDriver(HttpSettings(**values))  # type: ignore[arg-type]


async def _fails(driver: HttpDriver) -> DeliveryError:
    """The error of sending one batch (it must fail); the driver is closed after."""
    try:
        with anyio.fail_after(15):
            await driver.send(_batch(EVENT))
    except DeliveryError as exc:
        return exc
    finally:
        await driver.aclose()
    raise AssertionError("the batch was delivered")


def _assert_safe(text: str) -> None:
    """No control character, and none of our secrets, whole or its first characters."""
    assert not CONTROL.search(text), text
    for secret in (TOKEN, PASSWORD, KEY):
        assert secret[:6] not in text, text


# -- receiver text is data -------------------------------------------------------------------


@pytest.mark.anyio
async def test_escape_sequences_in_body_reason_and_location_are_escaped() -> None:
    """Regression: the reason phrase, the body and the Location went into the reason
    verbatim (raw ESC sequences, a newline that forges a log line, a bidi override)."""
    answer = Respond(
        400,
        reason=ESCAPES.replace("\r\n", " ").replace("\u202e", ""),  # what a status line holds
        body=ESCAPES.encode(),
    )
    with Receiver([answer]) as receiver:
        error = await _fails(_driver(receiver.url))
    message = str(error)
    print(message)
    assert isinstance(error, PermanentDeliveryError)
    _assert_safe(message)
    assert message.startswith(f"{receiver.url}: HTTP 400 \\x1b[2J\\x1b[1;31mPWNED")
    assert "\\x1b]0;title\\x07 forged: log line\\u202eevil" in message  # the body, escaped

    moved = Respond(308, headers=(("Location", "/v2\x1b[2J?token=x"),))
    with Receiver([moved]) as receiver:
        error = await _fails(_driver(receiver.url))
    message = str(error)
    _assert_safe(message)
    assert message.endswith(
        ": HTTP 308 Permanent Redirect: redirected to /v2\\x1b[2J?***, not a valid URL: not "
        'followed: {"status":308}'
    )


@pytest.mark.anyio
async def test_a_huge_error_body_gives_a_short_reason() -> None:
    """10 MiB of error body: the reason keeps its first 200 characters, read from the
    first 4 KiB; the rest is never read (the connection is dropped)."""
    huge = Respond(500, body=b"\x1b[31m" + b"x" * (10 << 20))
    with Receiver([huge]) as receiver:
        error = await _fails(_driver(receiver.url))
        assert receiver.wait_recorded(1, timeout=10)
    message = str(error)
    assert isinstance(error, RetryableDeliveryError)
    _assert_safe(message)
    assert message.endswith("x...")
    assert len(message) < 320


@pytest.mark.anyio
@pytest.mark.parametrize("auth", ["bearer", "basic", "signing"])
async def test_a_secret_the_receiver_echoes_is_never_published(auth: str) -> None:
    """Regression: a receiver answering 401 with the Authorization it got (a common
    debugging echo) had the token, or the Basic pair's base64, quoted in the reason;
    the same for one that echoes a signing key in its reason phrase."""
    settings: dict[str, object] = {}
    echo: Respond
    if auth == "bearer":
        settings["bearer_token"] = Secret(TOKEN)
        echo = Respond(401, echo="Authorization")
    elif auth == "basic":
        settings.update(basic_user="dovecot", basic_password=Secret(PASSWORD))
        echo = Respond(401, echo="Authorization")
    else:
        settings.update(signing="stalwart", signing_key=Secret(KEY))
        echo = Respond(403, reason=f"bad signature for key {KEY}", body=f"key={KEY}".encode())
    with Receiver([echo]) as receiver:
        error = await _fails(_driver(receiver.url, **settings))
    sent = receiver.requests[0]  # recorded once the receiver stopped
    message = str(error)
    print(message)
    _assert_safe(message)
    pair = base64.b64encode(f"dovecot:{PASSWORD}".encode()).decode()
    assert pair not in message
    if auth == "bearer":
        assert sent.header("Authorization") == f"Bearer {TOKEN}"  # it was sent: and echoed
        assert message.endswith(": HTTP 401 Unauthorized: Bearer ***")
    elif auth == "basic":
        assert message.endswith(": HTTP 401 Unauthorized: Basic ***")
    else:
        assert message.endswith(": HTTP 403 bad signature for key ***: key=***")


@pytest.mark.anyio
async def test_a_token_cut_by_the_excerpt_is_hidden_too() -> None:
    """Whitespace runs are made one space after the first 4 KiB are read: the token
    that read cut in two moves into the excerpt, and its first half is hidden too."""
    body = b" " * 4070 + TOKEN.encode() * 3
    with Receiver([Respond(400, body=body)]) as receiver:
        error = await _fails(_driver(receiver.url, bearer_token=Secret(TOKEN)))
    message = str(error)
    _assert_safe(message)
    assert message.endswith(": HTTP 400 Bad Request: ***...")


def test_dead_letters_and_stderr_of_export_hold_the_receivers_text_escaped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``export --to``: what the receiver said reaches the dead-letter reason escaped,
    without the token it echoed; nothing raw reaches stderr."""
    monkeypatch.setenv("EE_TOKEN", TOKEN)
    dead = tmp_path / "dead.ndjson"
    hostile = Respond(422, reason="\x1b[2JUnprocessable", body=(ESCAPES + " " + TOKEN).encode())
    with Receiver([hostile]) as receiver:
        argv = ["export", "--to", receiver.url, "--dead-letter", str(dead)]
        with bounded(30):
            code = main([*argv, "--http-bearer-token-env", "EE_TOKEN", str(EVENTS_FILE)])
    err = capsys.readouterr().err
    assert code == 3, err
    _assert_safe(err.replace("\n", " "))
    events, records = dead_letter_events(dead)
    assert events
    for record in records:
        reason = str(record["reason"])
        _assert_safe(reason)
        assert reason.startswith(f"{receiver.url}: HTTP 422 \\x1b[2JUnprocessable: \\x1b[2J")
        assert reason.endswith("evil ***")
    raw = dead.read_bytes()
    assert TOKEN.encode() not in raw
    assert b"\x1b" not in raw
    assert all(orjson.loads(line) for line in raw.splitlines())


# -- redirects: never to another origin with the body, headers or signature ------------------


def _secret_settings() -> dict[str, object]:
    return {
        "bearer_token": Secret(TOKEN),
        "signing": "stalwart",
        "signing_key": Secret(KEY),
        "headers": {"X-Source": "imap01"},
        "follow_redirects": True,
    }


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("status", "where", "other"),
    [
        (307, "http://127.0.0.1:{port}/ingest", "another port"),
        (308, "http://localhost:{port}/ingest", "another host"),
        (307, "//localhost:{port}/ingest?token=x", "another host"),
        (307, "https://127.0.0.1:{same}/ingest", "another scheme (https)"),
    ],
)
async def test_a_redirect_to_another_origin_is_not_followed(
    status: int, where: str, other: str
) -> None:
    """Regression: with follow_redirects, httpx followed a 307 to another host with the
    body, the custom headers and the signature (it strips only Authorization). The
    other origin receives nothing; the reason says where and why."""
    with Receiver() as elsewhere, Receiver() as receiver:
        location = where.format(port=elsewhere.port, same=receiver.port)
        receiver.add_plan(Respond(status, headers=(("Location", location),)))
        error = await _fails(_driver(receiver.url, **_secret_settings()))
    message = str(error)
    print(message)
    assert isinstance(error, PermanentDeliveryError)
    assert elsewhere.requests == []
    assert elsewhere.connections == 0
    assert len(receiver.requests) == 1
    shown = where.format(port=elsewhere.port, same=receiver.port).replace("?token=x", "?***")
    shown = "http:" + shown if shown.startswith("//") else shown
    assert f"redirected to {shown}, {other}: not followed (the body, headers and signature " in (
        message
    )
    assert f"go only to http://127.0.0.1:{receiver.port})" in message
    _assert_safe(message)


@pytest.mark.anyio
async def test_a_redirect_within_the_origin_is_followed_with_everything() -> None:
    """A 307 and a 308 to paths of the same origin: the same body, headers, token and
    signature go there."""
    with Receiver() as receiver:
        receiver.add_plan(
            Respond(307, headers=(("Location", "/v2"),)),
            Respond(308, headers=(("Location", f"http://127.0.0.1:{receiver.port}/v3"),)),
        )
        driver = _driver(receiver.url, **_secret_settings())
        with anyio.fail_after(10):
            await driver.send(_batch(EVENT))
        await driver.aclose()
    first, second, third = receiver.requests
    assert [r.path for r in receiver.requests] == ["/ingest", "/v2", "/v3"]
    assert [r.status for r in receiver.requests] == [307, 308, 200]
    for request in (second, third):
        assert request.body == first.body == EVENT + b"\n"
        for name in ("Authorization", "X-Signature", "X-Source", "Idempotency-Key"):
            assert request.header(name) == first.header(name), name
    assert third.header("Authorization") == f"Bearer {TOKEN}"


@pytest.mark.anyio
async def test_a_reason_after_a_followed_redirect_names_where_it_led() -> None:
    plan = [Respond(307, headers=(("Location", "/v2"),)), Respond(404)]
    with Receiver(plan) as receiver:
        error = await _fails(_driver(receiver.url, follow_redirects=True))
    assert str(error).startswith(
        f"{receiver.url} (redirected to http://127.0.0.1:{receiver.port}/v2): HTTP 404 Not Found"
    )


@pytest.mark.anyio
async def test_a_redirect_loop_ends_after_five_hops() -> None:
    plan = [Respond(307, headers=(("Location", "/loop"),))] * 7
    with Receiver(plan) as receiver:
        error = await _fails(_driver(receiver.url, follow_redirects=True))
    assert isinstance(error, PermanentDeliveryError)
    assert len(receiver.requests) == 6  # the request and five redirects followed
    assert str(error).endswith(
        f"(redirected to http://127.0.0.1:{receiver.port}/loop): HTTP 307 Temporary Redirect: "
        f"redirected to http://127.0.0.1:{receiver.port}/loop, more than 5 redirects: not "
        'followed: {"status":307}'
    )


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("answer", "said"),
    [
        (
            Respond(303, headers=(("Location", "/get"),)),
            "redirected to http://127.0.0.1:{port}/get, not followed: a 303 would turn the "
            "POST into a bodyless GET (only 307 and 308 keep the body)",
        ),
        (Respond(307), "HTTP 307 Temporary Redirect without a Location: not followed"),
        (
            Respond(307, headers=(("Location", "http://[::1/x"),)),
            "redirected to http://[::1/x, not a valid URL: not followed",
        ),
        (
            Respond(300, headers=(("Location", "/a"),)),
            "redirected to http://127.0.0.1:{port}/a, not followed (only a 307 or 308 is)",
        ),
    ],
)
async def test_every_redirect_not_followed_says_what_happened(answer: Respond, said: str) -> None:
    with Receiver([answer]) as receiver:
        error = await _fails(_driver(receiver.url, follow_redirects=True))
    assert isinstance(error, PermanentDeliveryError)
    assert said.format(port=receiver.port) in str(error)
    assert len(receiver.requests) == 1


@pytest.mark.anyio
async def test_without_follow_redirects_another_origin_gets_nothing_either() -> None:
    with Receiver() as elsewhere, Receiver() as receiver:
        receiver.add_plan(Respond(307, headers=(("Location", elsewhere.url),)))
        error = await _fails(_driver(receiver.url, bearer_token=Secret(TOKEN)))
    assert elsewhere.connections == 0
    assert str(error).endswith(
        f'redirected to {elsewhere.url}, not followed (follow_redirects is off): {{"status":307}}'
    )


def test_export_dead_letters_a_batch_redirected_to_another_host_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Permanent: one attempt, the batch in the dead-letter file with the reason, and
    the other origin never contacted."""
    monkeypatch.setenv("EE_TOKEN", TOKEN)
    dead = tmp_path / "dead.ndjson"
    with Receiver() as elsewhere, Receiver() as receiver:
        receiver.add_plan(Respond(307, headers=(("Location", elsewhere.url),)))
        argv = ["export", "--to", receiver.url, "--dead-letter", str(dead)]
        options = ["--http-follow-redirects", "--http-bearer-token-env", "EE_TOKEN"]
        with bounded(30):
            code = main([*argv, *options, str(EVENTS_FILE)])
    capsys.readouterr()
    assert code == 3
    assert elsewhere.connections == 0
    events, records = dead_letter_events(dead)
    assert len(events) == 36
    for record in records:
        assert record["attempts"] == 1
        assert f"redirected to {elsewhere.url}, another port: not followed" in str(record["reason"])
