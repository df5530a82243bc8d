"""The README and config.example.toml say what the code does."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from drivers.http import HttpSettings
from exporter.cli import main
from exporter.config import GlobalConfig, load_config
from exporter.delivery.exporter import DeliverySettings
from exporter.formats import FormatSpec

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()


def test_readme_python_example_runs() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README, re.DOTALL)
    assert blocks
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})


def test_readme_states_exactly_the_run_and_test_commands() -> None:
    commands = re.findall(r"```sh\n(.*?)```", README, re.DOTALL)
    assert commands[0].strip().endswith("event-exporter run config.example.toml")
    assert commands[1].strip() == "bash scripts/test"
    assert "bash scripts/test" in (REPO / ".ci" / "run").read_text()


def test_readme_lists_every_export_option(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "--help"]) == 0
    options = set(re.findall(r"--[a-z-]+", capsys.readouterr().out)) - {"--help"}
    assert options
    for option in options:
        assert option in README, option


def test_config_example_is_valid_and_shows_the_defaults() -> None:
    """Every key of the example is read by the loader (an unknown one is an error), and
    each value is the default: see test_config.test_the_example_loads_with_the_defaults."""
    config = load_config(REPO / "config.example.toml")
    assert config.settings == GlobalConfig()
    for exporter in config.exporters.values():
        assert exporter.delivery == DeliverySettings()
        assert exporter.spec == FormatSpec()
        if exporter.http is not None:
            assert exporter.http == HttpSettings(url=exporter.http.url)
