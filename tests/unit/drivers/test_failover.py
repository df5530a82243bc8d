"""Several URLs of one service (drivers.failover), against pytest-httpx: the order of
tries, a permanent failure moves nothing, failback after ``failback_after`` on an
injected clock, Retry-After kept only when every endpoint failed, every body (single
included), the one retry loop, settings and messages without a URL's query."""

from __future__ import annotations

import random
from pathlib import Path

import anyio
import httpx
import pytest
from pytest_httpx import HTTPXMock

from drivers.base import Batch
from drivers.failover import Endpoints
from drivers.http import HttpDriver, HttpSettings
from exporter.config import parse_config
from exporter.config.toml import ConfigError
from exporter.delivery.exporter import DeliverySettings, Exporter
from exporter.delivery.retry import DeliveryCounters, PauseGate, RetryPolicy, deliver
from exporter.errors import PermanentDeliveryError, RetryableDeliveryError, UsageError
from exporter.secret import Secret
from tests.support.logs import CapturedLog

pytestmark = pytest.mark.anyio
A = "http://127.0.0.1:9/a"
B = "http://127.0.0.1:10/b"
C = "http://127.0.0.1:11/c"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _batch(*events: bytes) -> Batch:
    batch = Batch()
    for event in events or (b'{"event":"x"}',):
        batch.append(event + b"\n")
    return batch


def _driver(clock: Clock | None = None, **settings: object) -> HttpDriver:
    values: dict[str, object] = {"url": A, "urls": (B,), "failback_after": 30.0, **settings}
    return HttpDriver(
        HttpSettings(**values),  # type: ignore[arg-type]
        monotonic=clock or Clock(),
    )


def _urls(httpx_mock: HTTPXMock) -> list[str]:
    return [str(request.url) for request in httpx_mock.get_requests()]


async def _send(driver: HttpDriver, batch: Batch | None = None) -> None:
    with anyio.fail_after(10):
        await driver.send(batch or _batch())


async def test_a_retryable_failure_moves_the_next_attempt_to_the_next_url(
    httpx_mock: HTTPXMock,
) -> None:
    httpx_mock.add_response(url=A, status_code=503, headers={"Retry-After": "20"})
    httpx_mock.add_response(url=B, status_code=200, is_reusable=True)
    driver = _driver()
    with pytest.raises(RetryableDeliveryError) as failed:
        await _send(driver)
    # another endpoint may take it now: the primary's Retry-After is not waited out
    assert failed.value.retry_after is None
    assert "the next attempt goes to http://127.0.0.1:10/b" in str(failed.value)
    await _send(driver)
    await _send(driver)
    assert _urls(httpx_mock) == [A, B, B]
    a, b = driver.endpoints.stats
    assert (a.requests["retryable"], a.failovers, b.requests["ok"]) == (1, 1, 2)
    assert driver.endpoints.active == 1
    await driver.aclose()


async def test_a_connection_failure_moves_it_too_and_the_rotation_wraps(
    httpx_mock: HTTPXMock,
) -> None:
    httpx_mock.add_exception(httpx.ConnectError("refused"), url=A)
    httpx_mock.add_exception(httpx.ConnectError("refused"), url=B)
    httpx_mock.add_response(url=C, status_code=503, headers={"Retry-After": "7"})
    httpx_mock.add_response(url=A, status_code=200)
    driver = _driver(urls=(B, C))
    for _ in range(2):
        with pytest.raises(RetryableDeliveryError) as failed:
            await _send(driver)
        assert failed.value.retry_after is None
    with pytest.raises(RetryableDeliveryError) as failed:
        await _send(driver)
    # every endpoint failed since the last success: the service's Retry-After holds
    assert failed.value.retry_after == 7.0
    await _send(driver)
    assert _urls(httpx_mock) == [A, B, C, A]
    assert [s.failovers for s in driver.endpoints.stats] == [1, 1, 1]
    await driver.aclose()


async def test_a_permanent_failure_moves_nothing(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(url=A, status_code=400)
    httpx_mock.add_response(url=A, status_code=200)
    driver = _driver()
    with pytest.raises(PermanentDeliveryError):
        await _send(driver)
    await _send(driver)
    assert _urls(httpx_mock) == [A, A]
    a, _ = driver.endpoints.stats
    assert (a.requests["permanent"], a.requests["ok"], a.failovers) == (1, 1, 0)
    await driver.aclose()


async def test_the_primary_is_tried_again_after_failback_after(httpx_mock: HTTPXMock) -> None:
    clock = Clock()
    httpx_mock.add_response(url=A, status_code=502)
    httpx_mock.add_response(url=B, status_code=200, is_reusable=True)
    httpx_mock.add_response(url=A, status_code=502)
    httpx_mock.add_response(url=A, status_code=200)
    driver = _driver(clock)
    with pytest.raises(RetryableDeliveryError):
        await _send(driver)
    clock.now += 29.9
    await _send(driver)  # not yet
    assert driver.endpoints.failback_in() == pytest.approx(0.1)
    clock.now += 0.1
    with pytest.raises(RetryableDeliveryError):
        await _send(driver)  # the primary again: still failing, back to B
    clock.now += 29.9
    await _send(driver)  # the time started again at the second failure
    clock.now += 0.1
    await _send(driver)
    assert _urls(httpx_mock) == [A, B, A, B, A]
    a, _ = driver.endpoints.stats
    assert (a.failbacks, a.failovers, driver.endpoints.active) == (2, 2, 0)
    assert driver.endpoints.failback_in() is None
    await driver.aclose()


async def test_a_longer_retry_after_of_the_primary_postpones_failback(
    httpx_mock: HTTPXMock,
) -> None:
    clock = Clock()
    httpx_mock.add_response(url=A, status_code=503, headers={"Retry-After": "120"})
    httpx_mock.add_response(url=B, status_code=200, is_reusable=True)
    driver = _driver(clock)
    with pytest.raises(RetryableDeliveryError):
        await _send(driver)
    clock.now += 119
    await _send(driver)
    assert _urls(httpx_mock) == [A, B]
    assert driver.endpoints.failback_in() == pytest.approx(1.0)
    await driver.aclose()


async def test_single_resumes_on_the_next_url_after_the_events_taken(
    httpx_mock: HTTPXMock,
) -> None:
    httpx_mock.add_response(url=A, status_code=200)
    httpx_mock.add_exception(httpx.ReadTimeout("slow"), url=A)
    httpx_mock.add_response(url=B, status_code=200, is_reusable=True)
    driver = _driver(body="single")
    batch = _batch(b'{"n":0}', b'{"n":1}', b'{"n":2}')
    with pytest.raises(RetryableDeliveryError):
        await _send(driver, batch)
    await _send(driver, batch)
    sent = [(str(r.url), r.content) for r in httpx_mock.get_requests()]
    assert sent == [(A, b'{"n":0}'), (A, b'{"n":1}'), (B, b'{"n":1}'), (B, b'{"n":2}')]
    await driver.aclose()


@pytest.mark.parametrize("body", ["ndjson", "json-array"])
async def test_every_body_goes_to_the_next_url_whole(httpx_mock: HTTPXMock, body: str) -> None:
    httpx_mock.add_exception(httpx.ConnectError("refused"), url=A)
    httpx_mock.add_response(url=B, status_code=200)
    driver = _driver(body=body)
    batch = _batch(b'{"n":0}', b'{"n":1}')
    with pytest.raises(RetryableDeliveryError):
        await _send(driver, batch)
    await _send(driver, batch)
    request = httpx_mock.get_requests(url=B)[0]
    assert request.content == _encoded(driver, batch)
    assert request.headers["Idempotency-Key"] == batch.key
    await driver.aclose()


async def test_through_the_retry_loop_the_batch_lands_on_the_backup_at_once(
    httpx_mock: HTTPXMock,
) -> None:
    httpx_mock.add_response(url=A, status_code=429, headers={"Retry-After": "300"})
    httpx_mock.add_response(url=B, status_code=200)
    driver = _driver()
    gate = PauseGate()
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    with anyio.fail_after(10):
        outcome = await deliver(
            driver,
            _batch(),
            RetryPolicy(),
            gate,
            DeliveryCounters(),
            rng=random.Random(1),
            sleep=sleep,
        )
    assert (outcome.failure, outcome.attempts) == (None, 2)
    assert gate.remaining() == 0  # the primary's 300 s did not pause the exporter
    assert len(slept) == 1
    assert slept[0] <= RetryPolicy().initial_delay
    await driver.aclose()


def test_two_requests_failing_together_move_it_once() -> None:
    endpoints = Endpoints(["a", "b", "c"], 30.0, clock=Clock())
    error = RetryableDeliveryError("a: refused")
    assert endpoints.pick() == 0
    endpoints.failed(0, error)
    endpoints.failed(0, error)  # the other request in flight, also at a
    assert endpoints.active == 1
    assert [s.failovers for s in endpoints.stats] == [1, 0, 0]
    assert endpoints.stats[0].requests["retryable"] == 2


async def test_moves_are_logged_with_the_exporter_and_destination(
    httpx_mock: HTTPXMock,
) -> None:
    clock = Clock()
    httpx_mock.add_exception(httpx.ConnectError("refused"), url=A + "?token=s3cr3t-t0ken")
    httpx_mock.add_response(url=B, status_code=200)
    httpx_mock.add_response(url=A + "?token=s3cr3t-t0ken", status_code=200)
    driver = _driver(clock, url=A + "?token=s3cr3t-t0ken")
    captured = CapturedLog()
    exporter = Exporter("collector", driver, DeliverySettings(), None, log=captured.log)
    assert exporter.endpoints is driver.endpoints
    with pytest.raises(RetryableDeliveryError) as failed:
        await _send(driver)
    await _send(driver)
    clock.now += 30
    await _send(driver)
    records = captured.records()
    assert [(r["level"], r["message"].split(":")[0]) for r in records] == [
        ("warning", "failover"),
        ("info", "failback"),
    ]
    assert all(r["exporter"] == "collector" and r["destination"] == A for r in records)
    assert f"requests go to {B}" in records[0]["message"]
    assert "in 30 s" in records[0]["message"]
    for text in [*(r["message"] for r in records), str(failed.value)]:
        assert "s3cr3t" not in text
    await driver.aclose()


def test_settings_check_every_url() -> None:
    with pytest.raises(UsageError, match=r"urls\[1\]: http destination: the scheme"):
        HttpSettings(A, urls=(B, "ftp://x/y"))
    with pytest.raises(UsageError, match=r"urls\[0\]: http://127.0.0.1:9/a\?\*\*\* is listed"):
        HttpSettings(A + "?k=1", urls=(A + "?k=2",))
    with pytest.raises(UsageError, match="unix_socket"):
        HttpSettings(A, urls=(B,), unix_socket="/run/x.sock")
    with pytest.raises(UsageError, match="travel in clear .* to 10.0.0.2"):
        HttpSettings(A, urls=("http://10.0.0.2/x",), bearer_token=_secret())


def _secret() -> Secret:
    return Secret("tok-1234567890", "test")


def _encoded(driver: HttpDriver, batch: Batch) -> bytes:
    body = driver.settings.make_body()
    assert body is not None
    return body.encode(batch)


def test_a_bad_url_is_a_problem_at_its_index(tmp_path: Path) -> None:
    text = (
        "[exporter.c]\n"
        f'destination = "{A}"\n'
        "[exporter.c.http]\n"
        "failback_after = 5\n"
        f'urls = ["{B}", "gopher://x/?token=hidden", "{C}"]\n'
        "[metric.m]\n"
        'exporter = "c"\n'
        'filter = "event=x"\n'
    )
    with pytest.raises(ConfigError) as problems:
        parse_config(text, "t.toml")
    message = str(problems.value)
    assert "t.toml:5: exporter.c.http.urls[1]: http destination: the scheme" in message
    assert "hidden" not in message
    good = text.replace('"gopher://x/?token=hidden", ', "")
    exporter = parse_config(good, "t.toml").exporters["c"]
    assert isinstance(exporter.driver_settings, HttpSettings)
    assert exporter.driver_settings.all_urls == (A, B, C)
    assert exporter.driver_settings.failback_after == 5.0
