"""Failover end to end: ``export --to PRIMARY --http-url BACKUP`` against two real
receivers on 127.0.0.1. The primary stops mid-stream (its listener closed: connection
refused), the events go to the backup; it starts again on the same port, and after
``--http-failback-after`` the events go to it again. Every event arrives exactly once
across the three (the primary before and after, the backup), none is dead-lettered.

The child's stdin is a pipe the test writes into phase by phase; each phase waits on
the receivers' counters (bounded polls), never on a sleep."""

from __future__ import annotations

import os
from pathlib import Path

from tests.support.config import numbered_lines
from tests.support.http_receiver import Receiver
from tests.support.processes import event_number, exporter_child, wait_until

FAILBACK_AFTER = 0.3
ROUNDS_MAX = 300
"""Small batches written while waiting for the failback (each waits for its delivery)."""


def _numbers(*receivers: Receiver) -> list[int]:
    return [event_number(line) for receiver in receivers for line in receiver.events()]


def test_the_primary_stops_the_backup_takes_over_then_the_primary_again(tmp_path: Path) -> None:
    dead_letters = tmp_path / "dead.ndjson"
    with Receiver() as backup:
        primary = Receiver().start()
        again: Receiver | None = None
        try:
            with exporter_child(
                "export",
                "--to",
                primary.url,
                "--http-url",
                backup.url,
                "--http-failback-after",
                str(FAILBACK_AFTER),
                "--batch-max-events",
                "50",
                "--batch-max-age",
                "0.01",
                "--dead-letter",
                str(dead_letters),
            ) as child:
                written = 0

                def write(count: int) -> None:
                    nonlocal written
                    os.write(child.stdin_w, numbered_lines(range(written, written + count)))
                    written += count

                def delivered() -> int:
                    return len(_numbers(primary, backup, *([again] if again else [])))

                write(200)  # 1: all to the primary
                assert wait_until(lambda: len(primary.events()) == 200, timeout=20)
                assert backup.events() == []

                primary.stop(finish_answers=True)  # 2: refused: all to the backup
                write(200)
                assert wait_until(lambda: len(backup.events()) == 200, timeout=20), bytes(
                    child.stderr
                ).decode(errors="replace")

                # 3: back on the same port; after failback_after the events go there
                again = Receiver(port=primary.port).start()
                for _ in range(ROUNDS_MAX):
                    write(5)
                    assert wait_until(lambda: delivered() == written, timeout=20)
                    if again.events():
                        break
                assert again.events(), "the primary got nothing back"
                on_backup = len(backup.events())
                write(100)  # 4: the primary again, to the end
                assert wait_until(lambda: delivered() == written, timeout=20)
                assert len(backup.events()) == on_backup
                child.close_stdin()
                child.wait_summary(30)
                assert child.wait(30) == 0
                summary = child.summary
                stderr = bytes(child.stderr).decode(errors="replace")
        finally:
            primary.stop()
            if again is not None:
                again.stop()
    numbers = _numbers(primary, backup, again)
    assert sorted(numbers) == list(range(written))  # each exactly once
    assert (summary.exported, summary.dead_lettered, summary.dropped) == (written, 0, 0)
    assert not dead_letters.exists() or dead_letters.stat().st_size == 0
    assert f"failover: {primary.url} failed" in stderr
    assert f"requests go to {backup.url}" in stderr
    assert f"failback: requests go to the primary {primary.url} again" in stderr
