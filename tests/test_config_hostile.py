"""The configuration reader on hostile text: linear in its input, whatever a line holds,
and a line inside a multi-line string is not a key."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from exporter.config import ConfigError, parse_config

REPO = Path(__file__).resolve().parent.parent
MINIMAL = """
[exporter.out]
destination = "file:events.ndjson"

[metric.all]
filter = "event=*"
exporter = "out"
"""
MEGABYTE = 1 << 20


@pytest.mark.parametrize(
    "line",
    [
        pytest.param(" " * MEGABYTE, id="spaces"),
        pytest.param("[" + " " * MEGABYTE, id="bracket-then-spaces"),
        pytest.param("a " * (MEGABYTE // 2), id="words"),
        pytest.param('\\"' * (MEGABYTE // 2), id="escaped-quotes"),
    ],
)
def test_check_reads_a_megabyte_line_in_a_multi_line_string_in_seconds(
    tmp_path: Path, line: str
) -> None:
    """Regression: the key finder's regex backtracked on a long line of spaces (5,000 of
    them took a minute; a megabyte never finished). A real ``check`` child, killed at
    the deadline."""
    path = tmp_path / "c.toml"
    path.write_text(
        MINIMAL.replace("[metric.all]", f'[global]\nhostname = """\n{line}\n"""\n\n[metric.all]')
    )
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "exporter", "check", str(path)],
        cwd=REPO,
        capture_output=True,
        timeout=30,
        check=False,
    )
    took = time.monotonic() - started
    print(f"check of a {len(line)}-character line: {took:.2f} s")
    assert done.returncode == 0, done.stderr[-500:]
    assert took < 20


def test_a_line_inside_a_multi_line_string_is_not_a_key() -> None:
    """The problem's line is where the key is written, not a line of a string before it
    that looks like the key."""
    text = (
        '[global]\nhostname = """\nshutdown_timeout = 5\n[exporter.out]\n"""\n'
        "shutdown_timeout = -1\n"
        "dead_letter = '''\nlog_level = x\n'''\nlog_level = \"loud\"\n" + MINIMAL
    )
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "t.toml")
    problems = str(caught.value).splitlines()
    assert problems[0] == "t.toml:6: global.shutdown_timeout: must be at least 0, not -1"
    assert problems[1].startswith("t.toml:10: global.log_level: 'loud' is not allowed")
