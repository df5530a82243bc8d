"""The README and config.example.toml say what the code does."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from drivers.file import FileSettings
from drivers.http import HttpSettings
from exporter.cli import main
from exporter.config import GlobalConfig, load_config, parse_config
from exporter.config.kinds import REQUIRED
from exporter.config.settings import BLOCKS, BODY_TABLES
from exporter.config.toml import Problems, Table
from exporter.delivery.exporter import DeliverySettings
from exporter.formats import FormatSpec
from tests.support import REPO

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
        if isinstance(exporter.driver_settings, HttpSettings):
            assert exporter.driver_settings == HttpSettings(url=exporter.driver_settings.url)
        else:
            assert exporter.driver_settings == FileSettings()


_COMMENTED_OUT = re.compile(r"# (\[[a-z_.]+\]|[a-z_]+ = .*)")
_KEY_LINE = re.compile(r"([a-z_]+) = (.*?)(?:  # (.*))?")


def _example_blocks() -> tuple[str, list[tuple[str, dict[str, tuple[object, str | None]]]]]:
    """The example with its commented-out blocks in, and each of its blocks: the block's
    name in the settings table (``source.TYPE`` for a source) and each key's value with
    the note beside it (``export --to``), if any."""
    lines, checked = [], []
    body_table = False  # in a commented-out [exporter.NAME.<table>] of a body not chosen
    for line in (REPO / "config.example.toml").read_text().splitlines():
        found = _COMMENTED_OUT.fullmatch(line)
        lines.append(found[1] if found else line)
        if found and found[1].startswith("["):
            body_table = found[1].strip("[]").rpartition(".")[2] in BODY_TABLES
        elif not found:
            body_table = False
        checked.append(line if body_table else lines[-1])
    text = "\n".join(checked) + "\n"
    notes: dict[str, dict[str, str | None]] = {}
    table = ""
    for line in lines:
        if line.startswith("["):
            table = line.strip("[]")
            notes[table] = {}
        elif (key_line := _KEY_LINE.fullmatch(line)) is not None:
            notes[table][key_line[1]] = key_line[3]
    data = tomllib.loads("\n".join(lines) + "\n")
    blocks = []
    for table, noted in notes.items():
        values = data
        for part in table.split("."):
            values = values[part]
        kind, _, rest = table.partition(".")
        block = kind
        if kind == "source":
            block = f"source.{values['type']}"
        elif kind == "exporter" and "." in rest:  # [exporter.NAME.http], .otlp, ...
            block = f"exporter.{rest.rpartition('.')[2]}"
        tables = ("headers", "labels")  # keys whose value is a table
        keys = {k: v for k, v in values.items() if not isinstance(v, dict) or k in tables}
        blocks.append((block, {key: (value, noted.get(key)) for key, value in keys.items()}))
    return text, blocks


def test_the_example_documents_every_setting_with_its_default_and_option() -> None:
    """Each block of config.example.toml (the commented-out sources too) has only keys of
    the settings table, together every one of them, each with its default (but where
    there is none: a destination, a path), and the option of each beside it, where it
    has one (and no note where it has none)."""
    text, blocks = _example_blocks()
    parse_config(text, "example")  # valid, commented-out blocks included
    documented: dict[str, set[str]] = {block: set() for block in BLOCKS}
    for block, keys in blocks:
        settings = BLOCKS[block]
        known = {key: setting for setting in settings for key in setting.toml_keys}
        assert set(keys) <= set(known), (block, set(keys) - set(known))
        documented[block] |= set(keys)
        for setting in {known[key] for key in keys}:
            written = {key: keys[key] for key in setting.toml_keys if key in keys}
            for key, flag in zip(setting.toml_keys, setting.flags or [None] * 2, strict=False):
                if key in written:
                    assert written[key][1] == (flag and f"{setting.command} {flag}"), (block, key)
            if setting.default is REQUIRED:
                continue
            problems = Problems("")
            table = Table(problems, block, {key: value for key, (value, _) in written.items()})
            value = setting.kind.read(table, setting.key, setting.default)
            assert (value, problems.found) == (setting.default, []), (block, setting.key)
    for block, settings in BLOCKS.items():
        missing = {key for setting in settings for key in setting.toml_keys} - documented[block]
        assert not missing, (block, missing)


def test_the_license_file_is_the_one_pyproject_names() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["license"] == {"text": "MIT"}
    assert (REPO / "LICENSE").read_text().startswith("MIT License\n")


def test_what_the_readme_run_leaves_behind_is_ignored_by_git() -> None:
    """config.example.toml as the README runs it writes these in the current directory."""
    example = load_config(REPO / "config.example.toml")
    written = {example.settings.dead_letter, example.exporters["archive"].destination.target}
    ignored = set((REPO / ".gitignore").read_text().splitlines())
    assert {f"/{name}" for name in written} <= ignored
    assert ".venv/" in ignored


@pytest.mark.parametrize("name", ["nats-agent.toml", "nats-aggregator.toml"])
def test_the_scale_out_examples_check(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """docs/scale-out.md's configurations, as shipped, pass check (their relative paths
    where it runs)."""
    monkeypatch.chdir(tmp_path)
    assert main(["check", str(REPO / "examples" / name)]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "nats://nats1.example.org:4222,nats2.example.org:4222,nats3.example.org:4222" in out
    assert (REPO / "docs" / "scale-out.md").read_text().count(name) >= 1
