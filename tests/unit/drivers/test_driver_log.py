"""The log driver: byte for byte into a pipe; on a terminal, a sender's control characters
are escaped, so they cannot act there among the daemon's own messages."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

from exporter.observe.text import terminal_safe

HOSTILE = b"event:x\tfield:msg=\x1b[2J\x1b]0;owned\x07 \xe2\x80\xae \xc2\x9b ok\n"


def _export_to_stdout(tmp_path: Path, stdout: int) -> subprocess.Popen[bytes]:
    source = tmp_path / "in.txt"
    source.write_bytes(HOSTILE)
    command = [sys.executable, "-m", "exporter", "export", "--format", "tab-text",
               "--include", "name,fields", "--to", "log:stdout", str(source),
               "--dead-letter", str(tmp_path / "dead.ndjson")]  # fmt: skip
    return subprocess.Popen(command, stdout=stdout, stderr=subprocess.DEVNULL)


def test_on_a_terminal_control_characters_are_escaped(tmp_path: Path) -> None:
    leader, follower = pty.openpty()
    try:
        child = _export_to_stdout(tmp_path, follower)
        os.close(follower)
        follower = -1
        assert child.wait(timeout=60) == 0
        seen = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # EIO: the terminal's other end is closed, all read
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(leader)
        if follower >= 0:
            os.close(follower)
    assert b"\x1b" not in seen
    assert b"\xe2\x80\xae" not in seen
    assert b"\\x1b[2J\\x1b]0;owned\\x07 \\xe2\\x80\\xae \\xc2\\x9b ok" in seen


def test_into_a_pipe_the_events_are_byte_for_byte(tmp_path: Path) -> None:
    child = _export_to_stdout(tmp_path, subprocess.PIPE)
    out, _ = child.communicate(timeout=60)
    assert out == HOSTILE


def test_tab_and_newline_of_the_formats_stay() -> None:
    assert terminal_safe(b"event:a\tfield:b=c\n") == b"event:a\tfield:b=c\n"
