"""Secrets read from a file: a link is followed (mounted secrets are links), anything but a
regular file is refused at once, never waited on, and a huge file is not read whole."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from exporter.errors import UsageError
from exporter.secret import SECRET_FILE_MAX_BYTES, Secret


def test_a_symlink_to_a_secret_is_followed(tmp_path: Path) -> None:
    (tmp_path / "..data").mkdir()
    (tmp_path / "..data" / "token").write_text("s3cret\n")
    (tmp_path / "token").symlink_to(tmp_path / "..data" / "token")
    assert Secret.from_file(str(tmp_path / "token")).reveal() == "s3cret"


def test_a_fifo_at_a_secret_file_is_refused_at_once(tmp_path: Path) -> None:
    """Regression: a plain open() of a FIFO waited for a writer: check and run hung."""
    fifo = tmp_path / "token"
    os.mkfifo(fifo)
    outcome: list[BaseException] = []

    def read() -> None:
        try:
            Secret.from_file(str(fifo))
        except BaseException as exc:
            outcome.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=10)
    if reader.is_alive():  # free the stuck reader, then fail
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("reading a secret from a FIFO waited for a writer")
    assert len(outcome) == 1
    assert isinstance(outcome[0], UsageError)
    assert "a FIFO, not a regular file" in str(outcome[0])


def test_a_secret_file_larger_than_a_secret_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_bytes(b"x" * (SECRET_FILE_MAX_BYTES + 1))
    with pytest.raises(UsageError, match="larger than"):
        Secret.from_file(str(path))


def test_a_secret_file_that_is_not_utf8_says_so(tmp_path: Path) -> None:
    """Regression: UnicodeDecodeError is a ValueError, which was read as a bad path."""
    path = tmp_path / "token"
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(UsageError, match="is not UTF-8 text"):
        Secret.from_file(str(path))
