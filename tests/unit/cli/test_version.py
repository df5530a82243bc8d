"""The version, where an operator or a receiver looks for it."""

from __future__ import annotations

import importlib.metadata

import httpx
import pytest
from pytest_httpx import HTTPXMock

from drivers.base import Batch
from drivers.http import HttpDriver, HttpSettings
from exporter import __version__
from exporter.cli import main

pytestmark = pytest.mark.anyio


def test_the_version_is_the_installed_package_s() -> None:
    assert __version__ == importlib.metadata.version("event-exporter")


@pytest.mark.parametrize("argv", [["--version"], ["version"]])
def test_version_prints_name_and_version(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 0
    assert capsys.readouterr().out == f"event-exporter {__version__}\n"


async def test_the_user_agent_carries_the_version(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(url="http://127.0.0.1:9/in", status_code=204)
    driver = HttpDriver(HttpSettings(url="http://127.0.0.1:9/in"))
    batch = Batch()
    batch.append(b'{"event":"x"}\n')
    try:
        await driver.send(batch)
    finally:
        await driver.aclose()
    request = httpx_mock.get_request()
    assert isinstance(request, httpx.Request)
    assert request.headers["User-Agent"] == f"event-exporter/{__version__}"
