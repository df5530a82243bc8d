"""The settings table: one declaration per setting, so a key and its option mean one thing.

A key written in a configuration and its option given to ``export --to`` make the same
objects (0 is "never" / "no limit" in both, a size takes a unit in both); every option
of the table is an option of its commands; ``check`` lists every setting of the table;
file settings belong to file: destinations only.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import anyio
import pytest

from drivers.base import Batch
from drivers.file import FileSettings
from drivers.http import HttpSettings
from exporter.cli import build_parser, main
from exporter.config import ExporterConfig, parse_config
from exporter.config.kinds import parse_size
from exporter.config.settings import (
    DELIVERY,
    DESTINATION,
    EXPORTER,
    FILE,
    GLOBAL,
    HTTP,
    SHIPPING,
    Setting,
    delivery_settings,
    file_settings,
    format_spec,
    http_settings,
    named,
    option_values,
)
from exporter.delivery.destinations import Destination
from tests.support.files import mode_of
from tests.unit.config.test_config import _problems

TOKEN = "tok-5e1f-SECRET-never-printed"
MINIMAL = '[exporter.out]\ndestination = "drop"\n'


def _exporter(destination: str, keys: str = "", http: str = "") -> ExporterConfig:
    text = f'[exporter.out]\ndestination = "{destination}"\n{keys}\n'
    if http:
        text += f"[exporter.out.http]\n{http}\n"
    return parse_config(text, "t.toml").exporters["out"]


def _options(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["export", *argv])


def _shipped(args: argparse.Namespace, destination: Destination) -> ExporterConfig:
    """What the options of ``export --to`` make, as the TOML reader makes an exporter."""
    values = option_values(args, (*EXPORTER, *HTTP))
    driver: FileSettings | HttpSettings | None = None
    if destination.kind == "file":
        driver = file_settings(values)
    elif destination.is_http:
        driver = http_settings(values, destination.target, "json")
    delivery = delivery_settings(values, values["body"])
    assert delivery is not None
    return ExporterConfig("out", format_spec(values), destination, delivery, driver)


# (key, as TOML writes it, as the command line gives it)
SAME_MEANING = [
    ("truncate", "0", "0"),
    ("truncate", "7", "7"),
    ("retry_max_attempts", "0", "0"),
    ("retry_max_attempts", "3", "3"),
    ("retry_max_elapsed", "0", "0"),
    ("retry_max_elapsed", "2.5", "2.5"),
    ("retry_initial_delay", "0.5", "0.5"),
    ("queue_max_bytes", '"64k"', "64k"),
    ("queue_max_bytes", '"2 GiB"', "2 GiB"),
    ("batch_max_bytes", '"2MiB"', "2MiB"),
    ("batch_max_bytes", "4096", "4096"),
    ("batch_max_age", "0", "0"),
    ("overflow", '"drop_oldest"', "drop_oldest"),
    ("format", '"tab-text"', "tab-text"),
    ("time_precision", '"ns"', "ns"),
    ("file_mode", '"0640"', "0640"),
    ("fsync", '"batch"', "batch"),
]


@pytest.mark.parametrize(("key", "written", "given"), SAME_MEANING)
def test_a_key_and_its_option_mean_the_same(key: str, written: str, given: str) -> None:
    setting = named(EXPORTER, key)
    assert setting.flag is not None
    from_toml = _exporter("file:x.ndjson", f"{key} = {written}")
    from_options = _shipped(
        _options("--to", "file:x.ndjson", setting.flag, given), from_toml.destination
    )
    assert from_options == from_toml


HTTP_SAME_MEANING = [
    ("body", '"single"', ["single"]),
    ("gzip_level", "9", ["9"]),
    ("compression", '"gzip"', ["gzip"]),
    ("headers", '{ "X-Source" = "imap01" }', ["X-Source: imap01"]),
    ("retry_statuses", "[429, 503]", ["429,503"]),
    ("concurrency", "4", ["4"]),
    ("connect_timeout", "0.5", ["0.5"]),
    ("follow_redirects", "true", []),
    ("verify_tls", "false", []),
    ("idempotency_header", '""', [""]),
    ("unix_socket", '"/run/collector.sock"', ["/run/collector.sock"]),
]


@pytest.mark.parametrize(("key", "written", "given"), HTTP_SAME_MEANING)
def test_an_http_key_and_its_option_mean_the_same(key: str, written: str, given: list[str]) -> None:
    setting = named(HTTP, key)
    assert setting.flag is not None
    url = "https://collector.example/in"
    from_toml = _exporter(url, http=f"{key} = {written}")
    from_options = _shipped(_options("--to", url, setting.flag, *given), from_toml.destination)
    assert from_options == from_toml
    assert from_toml != _exporter(url)  # not the default: the option was read


def test_a_secret_key_and_its_options_mean_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EE_TOKEN", TOKEN)
    (tmp_path / "pw").write_text(TOKEN + "\n")
    url = "https://collector.example/in"
    for written, given in [
        ('bearer_token_env = "EE_TOKEN"', ["--http-bearer-token-env", "EE_TOKEN"]),
        (
            f'basic_user = "u"\nbasic_password_file = "{tmp_path / "pw"}"',
            ["--http-basic-user", "u", "--http-basic-password-file", str(tmp_path / "pw")],
        ),
    ]:
        from_toml = _exporter(url, http=written)
        assert _shipped(_options("--to", url, *given), from_toml.destination) == from_toml


@pytest.mark.parametrize(
    ("key", "written", "given"),
    [("dead_letter_max_bytes", '"1MiB"', "1MiB"), ("shutdown_timeout", "0", "0")],
)
def test_a_global_key_and_its_option_mean_the_same(key: str, written: str, given: str) -> None:
    setting = named(SHIPPING, key)
    assert setting.flag is not None
    config = parse_config(f'[global]\n{key} = {written}\n[exporter.out]\ndestination = "drop"\n')
    values = option_values(_options("--to", "drop", setting.flag, given), SHIPPING)
    assert values[key] == getattr(config.settings, key)


def test_zero_means_no_limit_for_retries_in_both_places() -> None:
    """Regression: ``--retry-max-attempts 0`` was refused and ``--retry-max-elapsed 0``
    gave a batch up at its first failure, where the keys' 0 means until delivered."""
    args = _options("--to", "drop", "--retry-max-attempts", "0", "--retry-max-elapsed", "0")
    delivery = delivery_settings(option_values(args, EXPORTER), None)
    assert delivery is not None
    assert (delivery.retry.max_attempts, delivery.retry.max_elapsed) == (None, None)
    assert not delivery.retry.gives_up(attempts=1000, elapsed=1e9)


def test_retry_delays_that_do_not_fit_are_refused_by_both(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """One meaning: the first wait's cap is at most every wait's (the option no longer
    raised the maximum silently)."""
    message = "retry delays must satisfy 0 < initial (60.0) <= maximum (30.0)"
    assert _problems('[exporter.out]\ndestination = "drop"\nretry_initial_delay = 60\n') == [
        f"t.toml:1: exporter.out: {message}"
    ]
    assert main(["export", "--to", "drop", "--retry-initial-delay", "60", "/dev/null"]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("1048576", 1 << 20),
        ("1MiB", 1 << 20),
        ("1 MiB", 1 << 20),
        ("1m", 1 << 20),
        ("64k", 64 << 10),
        ("64K", 64 << 10),
        ("64kB", 64 << 10),
        ("64KiB", 64 << 10),
        ("2G", 2 << 30),
        ("1T", 1 << 40),
        ("512B", 512),
        ("0", 0),
    ],
)
def test_sizes_take_units(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "k", "1.5M", "-1", "64q", "1 KiBB", "0x10", "1iB", "١٢"])
def test_what_is_not_a_size(text: str) -> None:
    with pytest.raises(ValueError, match="is not a size"):
        parse_size(text)


def test_a_size_in_the_config_with_a_unit_or_a_problem_at_its_line() -> None:
    exporter = _exporter("drop", 'queue_max_bytes = "256 MiB"\nbatch_max_bytes = "64k"')
    assert (exporter.delivery.queue_max_bytes, exporter.delivery.batch_max_bytes) == (
        256 << 20,
        64 << 10,
    )
    text = (
        '[exporter.out]\ndestination = "drop"\nqueue_max_bytes = "64q"\n'
        'batch_max_bytes = true\n[global]\ndead_letter_max_bytes = "0k"\n'
        '[source.web]\ntype = "http"\nmax_body_bytes = "4 MiB"\n'
    )
    assert _problems(text) == [
        "t.toml:6: global.dead_letter_max_bytes: must be at least 1, not 0",
        "t.toml:3: exporter.out.queue_max_bytes: '64q' is not allowed (allowed: a whole number "
        "of bytes, or with a unit: 64k, 1MiB, 2G (k = 1024))",
        "t.toml:4: exporter.out.batch_max_bytes: must be a whole number of bytes or a string "
        "with a unit, not a boolean",
    ]
    web = parse_config(text.split("[global]")[0].replace('"64q"', "1").replace("true", "1"))
    source = parse_config('[source.web]\ntype = "http"\nmax_body_bytes = "4 MiB"\n' + MINIMAL)
    assert source.sources["web"].http is not None
    assert source.sources["web"].http.max_body_bytes == 4 << 20
    assert web.exporters["out"].delivery.queue_max_bytes == 1


def test_a_size_on_the_command_line_with_a_unit_or_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = _options("--to", "drop", "--queue-max-bytes", "64k", "--dead-letter-max-bytes", "2G")
    assert (args.queue_max_bytes, args.dead_letter_max_bytes) == (64 << 10, 2 << 30)
    assert main(["export", "--to", "drop", "--batch-max-bytes", "64q", "/dev/null"]) == 2
    assert "argument --batch-max-bytes: '64q' is not a size" in capsys.readouterr().err


def test_file_settings_belong_to_file_destinations() -> None:
    """Regression: ``file_mode`` and ``fsync`` on an http exporter were read and ignored."""
    assert _problems(
        '[exporter.web]\ndestination = "http://127.0.0.1:9/in"\nfile_mode = "0640"\n'
        'fsync = "batch"\n[exporter.nowhere]\ndestination = "drop"\nfsync = "none"\n'
    ) == [
        "t.toml:3: exporter.web.file_mode: only for file: destinations, not http",
        "t.toml:4: exporter.web.fsync: only for file: destinations, not http",
        "t.toml:7: exporter.nowhere.fsync: only for file: destinations, not drop",
    ]
    assert _exporter("file:x", 'file_mode = "0640"').driver_settings == FileSettings(mode=0o640)
    assert _exporter("log:stderr").driver_settings is None


def _help(command: str) -> str:
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    shown: str = commands.choices[command].format_help()
    return shown


@pytest.mark.parametrize(
    ("command", "settings"),
    [
        ("export", (*EXPORTER, *SHIPPING, *HTTP)),
        ("replay", (DESTINATION, *FILE, *DELIVERY, *SHIPPING, *HTTP)),
        ("spool", (DESTINATION, *FILE, *DELIVERY, *SHIPPING, *HTTP)),
        ("check", [named(GLOBAL, "dovecot_version")]),
    ],
)
def test_every_option_of_the_table_is_an_option_of_its_commands(
    command: str, settings: tuple[Setting, ...]
) -> None:
    shown = _help(command)
    flags = [flag for setting in settings for flag in setting.flags]
    assert flags
    for flag in flags:
        assert f"{flag} " in shown or f"{flag}\n" in shown, flag


def test_options_show_the_tables_default() -> None:
    shown = " ".join(_help("export").split())
    assert "a batch closes at this many events; default 1000" in shown
    assert "the exporter's queue holds at most this many events; default 100000" in shown
    assert "every wait's cap (at least the first one's); default 30 s" in shown


def test_check_lists_every_setting_of_the_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EE_TOKEN", TOKEN)
    path = tmp_path / "c.toml"
    path.write_text(
        '[exporter.file]\ndestination = "file:x"\nqueue_max_bytes = "64k"\nfile_mode = "0640"\n'
        'spool = "/var/lib/e.db"\n'
        '[exporter.web]\ndestination = "https://c.example/"\n[exporter.web.http]\n'
        'bearer_token_env = "EE_TOKEN"\nheaders = { "X-Api-Key" = "' + TOKEN + '" }\n'
    )
    assert main(["check", str(path)]) == 0
    out = capsys.readouterr().out
    assert TOKEN not in out
    file_part, web_part = out.split("exporter web -> ")
    for setting in EXPORTER:
        if setting is not DESTINATION:  # in the first line, credentials masked
            in_file, in_web = f" {setting.key} " in file_part, f" {setting.key} " in web_part
            assert (in_file, in_web) == (True, setting not in FILE), setting.key
    for setting in HTTP:
        assert f" {setting.key} " in web_part, setting.key
    for shown in (
        "queue_max_bytes 65536",
        "file_mode 0640",
        "spool /var/lib/e.db",
        "truncate none",
    ):
        assert shown in file_part, shown
    assert "bearer_token *** (environment variable EE_TOKEN)" in web_part
    assert "headers X-Api-Key" in web_part
    assert "retry_statuses 408,425,429,500,502,503,504" in web_part


@pytest.mark.anyio
async def test_a_destination_opens_its_driver_with_the_drivers_own_settings(
    tmp_path: Path,
) -> None:
    path = tmp_path / "events.ndjson"
    driver = Destination("file", str(path)).open(FileSettings(mode=0o640, fsync="batch"))
    batch = Batch()
    batch.append(b'{"event":"a"}\n')
    with anyio.fail_after(10):
        await driver.send(batch)
        await driver.aclose()
    assert (path.read_bytes(), mode_of(path)) == (b'{"event":"a"}\n', 0o640)
    with pytest.raises(TypeError, match="file destinations take no HttpSettings"):
        Destination("file", str(path)).open(HttpSettings(url="https://c.example/"))
    with pytest.raises(TypeError, match="drop destinations take no FileSettings"):
        Destination("drop", "").open(FileSettings())
    with pytest.raises(TypeError, match="http destinations take no FileSettings"):
        Destination("http", "https://c.example/").open(FileSettings())
