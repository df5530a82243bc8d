"""``event-exporter run`` as a user runs it: a child process with an http source, a
metric and a file exporter; events posted over HTTP; SIGTERM ends it with a summary."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import httpx
import pytest

from exporter.cli import main
from tests.samples import EVENTS_FILE
from tests.shipping_helpers import exporter_child, plain_export, wait_until

FILTER = "event=imap_command_finished"


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "exporter.toml"
    path.write_text(
        f"""
[global]
dead_letter = "{tmp_path / "dead.ndjson"}"
shutdown_timeout = 5.0

[source.listener]
type = "http"
listen = "127.0.0.1:0"

[exporter.archive]
destination = "file:{tmp_path / "events.ndjson"}"
batch_max_age = 0.05

[metric.commands]
filter = "{FILTER}"
exporter = "archive"
"""
    )
    return path


def test_run_receives_over_http_and_writes_what_export_would(tmp_path: Path) -> None:
    config = _config(tmp_path)
    out = tmp_path / "events.ndjson"
    with exporter_child("run", str(config)) as child:
        listening = re.compile(rb"listening on http://127\.0\.0\.1:(\d+)")
        assert wait_until(lambda: listening.search(bytes(child.stderr)) is not None, timeout=10)
        found = listening.search(bytes(child.stderr))
        assert found is not None
        url = f"http://127.0.0.1:{int(found.group(1))}/events"
        answer = httpx.post(url, content=EVENTS_FILE.read_bytes(), timeout=10)
        assert answer.status_code == 204
        expected = plain_export(tmp_path, EVENTS_FILE, ["--filter", FILTER])
        assert wait_until(lambda: out.exists() and out.read_bytes() == expected, timeout=10)
        child.proc.send_signal(signal.SIGTERM)
        assert child.wait(timeout=10) == 0
    stderr = bytes(child.stderr).decode()
    matched = expected.count(b"\n")
    assert f"metric commands: matched {matched}" in stderr
    assert f"received {matched}, exported {matched}, retried 0, dropped 0" in stderr
    assert not (tmp_path / "dead.ndjson").exists()


def test_run_refuses_a_config_without_sources(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[exporter.a]\ndestination = "drop"\n')
    assert main(["run", str(config)]) == 2
    assert "no [source.NAME] block" in capsys.readouterr().err


def test_run_with_stdin_ends_when_its_input_ends(tmp_path: Path) -> None:
    config = _config(tmp_path)
    text = config.read_text().replace('type = "http"\nlisten = "127.0.0.1:0"', 'type = "stdin"')
    config.write_text(text)
    out = tmp_path / "events.ndjson"
    with exporter_child("run", str(config)) as child:
        os.write(child.stdin_w, EVENTS_FILE.read_bytes() + b"not an event\n")
        child.close_stdin()
        assert child.wait(timeout=10) == 0
    assert out.read_bytes() == plain_export(tmp_path, EVENTS_FILE, ["--filter", FILTER])
    assert "source listener: line 37: " in bytes(child.stderr).decode()
