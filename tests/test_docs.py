"""The README and config.example.toml say what the code does."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from exporter.cli import main
from exporter.formats import FormatSpec, parse_include

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


def test_config_example_format_keys_are_valid() -> None:
    config = tomllib.loads((REPO / "config.example.toml").read_text())
    for exporter in config["exporter"].values():
        FormatSpec(
            format=exporter["format"],
            time_format=exporter["time_format"],
            time_precision=exporter["time_precision"],
            truncate=exporter["truncate"] or None,
        )
    for metric in config["metric"].values():
        assert metric["exporter"] in config["exporter"]
        parse_include(" ".join(metric["include"]))
