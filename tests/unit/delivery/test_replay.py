"""``replay`` takes only dead-letter records: any other line is an error naming the file
and the line, exit 2, and nothing is sent."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.cli import main
from exporter.delivery.deadletter import DeadLetterFile

EVENT = b'{"event":"imap_command_finished","hostname":"h","fields":{"user":"u"}}'


@pytest.mark.parametrize(
    "line",
    [
        EVENT,  # a Dovecot event has an "event" member: replayed, its name alone was sent
        b'{"event":"x","reason":"r"}',
        b"not json",
        b'["event"]',
        b'{"time":"t","exporter":"e","destination":"d","reason":"r","attempts":1,"event":5}',
    ],
)
def test_a_line_that_is_not_a_dead_letter_record_stops_replay_before_anything_is_sent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], line: bytes
) -> None:
    """Regression: replay of a plain event file exited 0 having sent only the names."""
    dead, out = tmp_path / "dead.ndjson", tmp_path / "out.ndjson"
    DeadLetterFile(dead).write([EVENT], destination="file:x", reason="r", attempts=1)
    with dead.open("ab") as file:
        file.write(line + b"\n")
    status = main(
        ["replay", str(dead), "--to", f"file:{out}", "--dead-letter", str(tmp_path / "d2")]
    )
    assert status == 2
    err = capsys.readouterr().err
    assert f"{dead}:2: not a dead-letter record" in err
    assert not out.exists()  # not even the good first record went


def test_dead_letter_records_are_replayed_byte_for_byte(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dead, out = tmp_path / "dead.ndjson", tmp_path / "out.ndjson"
    raw = b"event:x\tfield:v=\xff"
    DeadLetterFile(dead).write([EVENT, raw], destination="file:x", reason="r", attempts=2)
    assert main(["replay", str(dead), "--to", f"file:{out}"]) == 0
    assert out.read_bytes() == EVENT + b"\n" + raw + b"\n"
