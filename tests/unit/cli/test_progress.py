"""``export``'s progress line: on a terminal only, erased at the end, never in pipes."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from exporter.cli import main
from tests.support import REPO
from tests.support.samples import EVENTS_FILE


def _big_input(tmp_path: Path) -> Path:
    path = tmp_path / "big.ndjson"
    path.write_bytes(EVENTS_FILE.read_bytes() * 300)  # ~11,000 events, over 6 MB
    return path


def test_a_terminal_sees_progress_then_a_clean_line(tmp_path: Path) -> None:
    source = _big_input(tmp_path)
    main_fd, terminal_fd = pty.openpty()
    try:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "exporter",
                "export",
                "--output",
                str(tmp_path / "out"),
                str(source),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=terminal_fd,
            cwd=REPO,
        )
        os.close(terminal_fd)
        seen = bytearray()
        while True:  # bounded: the child's end closes the terminal (EIO)
            try:
                data = os.read(main_fd, 4096)
            except OSError:
                break
            if not data:
                break
            seen += data
        assert proc.wait(timeout=120) == 0
    finally:
        os.close(main_fd)
    text = seen.decode()
    assert "%  " in text
    assert " MB of " in text
    assert "events" in text
    assert text.endswith("\r\x1b[K")  # the last line erased: the terminal is left clean
    assert (tmp_path / "out").stat().st_size > 0


def test_no_progress_when_stderr_is_not_a_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = _big_input(tmp_path)
    assert main(["export", "--output", str(tmp_path / "out"), str(source)]) == 0
    assert capsys.readouterr().err == ""
