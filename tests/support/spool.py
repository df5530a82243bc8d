"""A daemon configuration for the spool crash tests: one source, a spooled exporter posting
to a (flaky) receiver, quick retries; a small real filesystem to fill."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.config import Block, merged, write_config

FLAKY = ["500", "ok", "503:retry-after=0", "ok", "ok", "429", "ok"] * 30
"""A receiver script: errors, a pause, a refusal, between successes."""


def spooled_daemon_config(
    tmp_path: Path,
    url: str,
    source: Block,
    exporter: Block | None = None,
    *,
    spool: Path | None = None,
    batch_max_age: float = 0.02,
    shutdown_timeout: float = 5.0,
) -> Path:
    """``c.toml`` in ``tmp_path``: the source ``[source.in]``, an exporter spooling to
    ``spool`` (``spool.db`` there) and posting to ``url`` (plus ``exporter`` settings),
    self-metrics on a free port."""
    out = {
        "destination": url,
        "spool": spool or tmp_path / "spool.db",
        "batch_max_age": batch_max_age,
        "retry_initial_delay": 0.01,
        "retry_max_delay": 0.05,
    }
    return write_config(
        tmp_path / "c.toml",
        settings={
            "dead_letter": tmp_path / "dead.ndjson",
            "summary_interval": 0,
            "shutdown_timeout": shutdown_timeout,
            "metrics_listen": "127.0.0.1:0",
        },
        sources={"in": source},
        exporters={"out": merged(out, exporter)},
        metrics={"all": {"filter": "event=e", "exporter": "out"}},
    )


@contextmanager
def small_disk(where: Path, size: str = "3m") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``where`` (a real filesystem that fills up: ENOSPC,
    SQLite's "database or disk is full"), unmounted after. Skipped, saying why, where
    mount is not allowed (not root, no CAP_SYS_ADMIN)."""
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        timeout=10,
    )
    if mounted.returncode != 0:
        pytest.skip(
            "NOT RUN: a full-disk test needs 'mount -t tmpfs' (root or CAP_SYS_ADMIN): "
            + (mounted.stderr.strip() or f"exit {mounted.returncode}")
        )
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True, timeout=10, check=False)


def fill(disk: Path, leave: int) -> Path:
    """A file taking all of ``disk`` but ``leave`` bytes (remove it to make room)."""
    filler = disk / "filler"
    free = os.statvfs(disk)
    room = free.f_bavail * free.f_frsize - leave
    with filler.open("wb") as file:
        file.write(b"\0" * max(0, room))
    return filler
