"""Loki and Splunk HEC through the http driver (pytest-httpx) and their settings
(TOML, CLI, check): status tables, the HEC 400 that names an event, the token kept out
of every message and off plain http."""

from __future__ import annotations

from pathlib import Path

import anyio
import orjson
import pytest
from pytest_httpx import HTTPXMock

from drivers.base import Batch, Partial
from drivers.bodies.loki import LokiSettings
from drivers.bodies.splunk_hec import SplunkSettings
from drivers.http import HttpDriver, HttpSettings
from exporter.cli import main
from exporter.errors import PermanentDeliveryError, RetryableDeliveryError, UsageError
from exporter.secret import Secret
from tests.support.samples import EVENTS_FILE

pytestmark = pytest.mark.anyio
LOKI = "http://127.0.0.1:9/loki/api/v1/push"
HEC = "http://127.0.0.1:9/services/collector/event"
TOKEN = "hec-77d1-SECRET-never-printed"
LINES = EVENTS_FILE.read_bytes().splitlines()


def _batch(n: int) -> Batch:
    batch = Batch()
    for line in LINES[:n]:
        batch.append(line + b"\n")
    return batch


def _hec(**options: object) -> HttpDriver:
    settings = SplunkSettings(token=Secret(TOKEN), **options)  # type: ignore[arg-type]
    return HttpDriver(HttpSettings(url=HEC, body="splunk-hec", options=settings))


def _loki(**options: object) -> HttpDriver:
    settings = LokiSettings(**options)  # type: ignore[arg-type]
    return HttpDriver(HttpSettings(url=LOKI, body="loki", options=settings))


async def _send(driver: HttpDriver, batch: Batch) -> Partial | None:
    with anyio.fail_after(10):
        try:
            return await driver.send(batch)
        finally:
            await driver.aclose()


async def test_loki_posts_json_with_the_tenant_and_takes_a_204(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(status_code=204)
    assert await _send(_loki(tenant="mail"), _batch(3)) is None
    request = httpx_mock.get_request()
    assert request is not None
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["X-Scope-OrgID"] == "mail"
    values = [v for s in orjson.loads(request.content)["streams"] for v in s["values"]]
    assert sorted(line for _, line in values) == sorted(line.decode() for line in LINES[:3])


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (429, RetryableDeliveryError),
        (503, RetryableDeliveryError),
        (500, RetryableDeliveryError),
        (400, PermanentDeliveryError),
        (401, PermanentDeliveryError),
    ],
)
async def test_lokis_statuses(httpx_mock: HTTPXMock, status: int, error: type) -> None:
    text = "entry for stream '{job=\"dovecot\"}' has timestamp too old: 2026-01-01T00:00:00Z"
    httpx_mock.add_response(status_code=status, text=text)
    with pytest.raises(error) as raised:
        await _send(_loki(), _batch(2))
    assert "timestamp too old" in str(raised.value)


async def test_hec_sends_the_token_and_channel_and_takes_code_0(httpx_mock: HTTPXMock) -> None:
    channel = "0f5fc0d2-2b4a-4c67-9f1e-6c1a9a3c0b1e"
    httpx_mock.add_response(json={"text": "Success", "code": 0})
    assert await _send(_hec(channel=channel), _batch(2)) is None
    request = httpx_mock.get_request()
    assert request is not None
    assert request.headers["Authorization"] == f"Splunk {TOKEN}"
    assert request.headers["X-Splunk-Request-Channel"] == channel
    assert [orjson.loads(e)["event"] for e in request.content.splitlines()] == [
        orjson.loads(line) for line in LINES[:2]
    ]


async def test_a_hec_400_naming_an_event_is_a_partial(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(
        status_code=400, json={"text": "Invalid data format", "code": 6, "invalid-event-number": 1}
    )
    partial = await _send(_hec(), _batch(4))
    assert partial is not None
    assert partial.retry == [2, 3]
    assert list(partial.rejected.values()) == [[1]]


@pytest.mark.parametrize(
    ("status", "answer", "error"),
    [
        (400, {"text": "Incorrect index", "code": 7}, PermanentDeliveryError),
        (401, {"text": "Token is required", "code": 2}, PermanentDeliveryError),
        (403, {"text": "Invalid token", "code": 4}, PermanentDeliveryError),
        (503, {"text": "Server is busy", "code": 9}, RetryableDeliveryError),
        (429, {"text": "Too many requests", "code": 9}, RetryableDeliveryError),
        (500, {"text": "Internal server error", "code": 8}, RetryableDeliveryError),
    ],
)
async def test_hecs_statuses_with_hecs_text_and_never_the_token(
    httpx_mock: HTTPXMock, status: int, answer: dict[str, object], error: type
) -> None:
    echoed = {**answer, "text": f"{answer['text']} (Splunk {TOKEN})"}
    httpx_mock.add_response(status_code=status, json=echoed)
    with pytest.raises(error) as raised:
        await _send(_hec(), _batch(2))
    assert str(answer["text"]) in str(raised.value)
    assert TOKEN not in str(raised.value)
    assert "***" in str(raised.value)


def test_the_hec_token_is_a_credential_refused_in_clear_to_another_host() -> None:
    options = SplunkSettings(token=Secret(TOKEN))
    with pytest.raises(UsageError, match="Splunk HEC token would travel in clear"):
        HttpSettings(
            url="http://splunk.example:8088/services/collector/event",
            body="splunk-hec",
            options=options,
        )
    allowed = HttpSettings(
        url="http://splunk.example:8088/x",
        body="splunk-hec",
        options=options,
        allow_plain_http=True,
    )
    assert allowed.sent_in_clear == ("Splunk HEC token",)
    assert TOKEN not in repr(allowed) + str(allowed.warnings())
    with pytest.raises(UsageError, match="not both|no bearer token"):
        HttpSettings(url=HEC, body="splunk-hec", options=options, bearer_token=Secret("b"))
    with pytest.raises(UsageError, match="needs its HEC token"):
        HttpSettings(url=HEC, body="splunk-hec")


def test_a_hec_token_with_a_newline_is_refused_without_being_shown() -> None:
    with pytest.raises(UsageError, match="characters a header cannot carry") as raised:
        HttpSettings(url=HEC, body="splunk-hec", options=SplunkSettings(token=Secret("a\nb")))
    assert "a\nb" not in str(raised.value)


def test_check_refuses_a_label_over_a_field_at_its_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        '[exporter.loki]\ndestination = "http://127.0.0.1:3100/loki/api/v1/push"\n'
        '[exporter.loki.http]\nbody = "loki"\n'
        '[exporter.loki.loki]\nlabels = { job = "dovecot", user = "{user}" }\n'
        '[metric.all]\nfilter = "event=*"\nexporter = "loki"\n'
    )
    assert main(["check", str(path)]) == 2
    err = capsys.readouterr().err
    assert "exporter.loki.loki.labels.user: label cardinality: {user}" in err


def test_check_shows_the_bodies_settings_and_never_the_token(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HEC_TOKEN", TOKEN)
    path = tmp_path / "c.toml"
    path.write_text(
        '[exporter.hec]\ndestination = "https://splunk.example:8088/services/collector/event"\n'
        '[exporter.hec.http]\nbody = "splunk-hec"\n'
        '[exporter.hec.splunk]\ntoken_env = "HEC_TOKEN"\nindex = "mail"\n'
        '[exporter.loki]\ndestination = "https://loki.example/loki/api/v1/push"\n'
        '[exporter.loki.http]\nbody = "loki"\n'
        '[exporter.loki.loki]\nlabels = { job = "dovecot", svc = "{category:service}" }\n'
        'tenant = "mail"\n'
        '[metric.all]\nfilter = "event=*"\nexporter = "hec"\n'
        '[metric.all2]\nfilter = "event=*"\nexporter = "loki"\n'
    )
    assert main(["check", str(path)]) == 0
    out = capsys.readouterr()
    assert TOKEN not in out.out + out.err
    assert "environment variable HEC_TOKEN" in out.out
    assert "svc={category:service}" in out.out
    assert "index mail" in out.out
    assert "auth Splunk HEC token *** (environment variable HEC_TOKEN)" in out.out


def test_export_refuses_a_label_over_a_field_on_the_command_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["export", "--to", LOKI, "--http-body", "loki", "--loki-label", "ip={remote_ip}"]
    assert main([*argv, str(EVENTS_FILE)]) == 2
    assert "label ip: label cardinality" in capsys.readouterr().err


def test_a_loki_body_needs_json_events() -> None:
    with pytest.raises(UsageError, match="needs json events"):
        HttpSettings(url=LOKI, body="loki", event_format="tab-text")
