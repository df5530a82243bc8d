"""The README and config.example.toml say what the code does."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from exporter.cli import main
from exporter.cli_delivery import DEFAULT_DEAD_LETTER
from exporter.destinations import parse_destination
from exporter.engine import DeliverySettings
from exporter.formats import FormatSpec, parse_include
from exporter.queue import Overflow
from exporter.retry import RetryPolicy

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()


def test_readme_python_example_runs() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README, re.DOTALL)
    assert blocks
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})


def test_readme_states_exactly_the_run_and_test_commands() -> None:
    commands = re.findall(r"```sh\n(.*?)```", README, re.DOTALL)
    assert commands[0].strip().endswith("event-exporter export examples/dovecot-events.ndjson")
    assert commands[1].strip() == "bash scripts/test"
    assert "bash scripts/test" in (REPO / ".ci" / "run").read_text()


def test_readme_lists_every_export_option(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "--help"]) == 0
    options = set(re.findall(r"--[a-z-]+", capsys.readouterr().out)) - {"--help"}
    assert options
    for option in options:
        assert option in README, option


def test_config_example_keys_are_valid_settings() -> None:
    config = tomllib.loads((REPO / "config.example.toml").read_text())
    for exporter in config["exporter"].values():
        FormatSpec(
            format=exporter["format"],
            time_format=exporter["time_format"],
            time_precision=exporter["time_precision"],
            truncate=exporter["truncate"] or None,
        )
        parse_destination(exporter["destination"])
        assert int(exporter["file_mode"], 8) == 0o600
        assert exporter["fsync"] in ("none", "batch", "interval")
        defaults = DeliverySettings(
            queue_max_events=exporter["queue_max_events"],
            queue_max_bytes=exporter["queue_max_bytes"],
            overflow=Overflow(exporter["overflow"]),
            batch_max_events=exporter["batch_max_events"],
            batch_max_bytes=exporter["batch_max_bytes"],
            batch_max_age=exporter["batch_max_age"],
            retry=RetryPolicy(
                initial_delay=exporter["retry_initial_delay"],
                max_delay=exporter["retry_max_delay"],
                max_attempts=exporter["retry_max_attempts"] or None,
                max_elapsed=exporter["retry_max_elapsed"] or None,
                max_retry_after=exporter["retry_max_retry_after"],
            ),
        )
        assert defaults == DeliverySettings()  # the example shows the defaults
    assert config["global"]["dead_letter"] == DEFAULT_DEAD_LETTER
    for metric in config["metric"].values():
        assert metric["exporter"] in config["exporter"]
        parse_include(" ".join(metric["include"]))


def test_config_example_http_keys_are_the_http_settings() -> None:
    from drivers.http import HttpSettings

    config = tomllib.loads((REPO / "config.example.toml").read_text())
    http = config["exporter"]["collector"]["http"]
    for secret in ("bearer_token", "basic_password", "signing_key"):
        assert http.pop(f"{secret}_env") == http.pop(f"{secret}_file") == ""  # none set
    settings = HttpSettings(
        url=config["exporter"]["collector"]["destination"],
        basic_user=http.pop("basic_user") or None,
        retry_statuses=frozenset(http.pop("retry_statuses")),
        ca_file=http.pop("ca_file") or None,
        unix_socket=http.pop("unix_socket") or None,
        **http,
    )
    assert settings == HttpSettings(url=settings.url)  # the example shows the defaults
