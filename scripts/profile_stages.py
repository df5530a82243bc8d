#!/usr/bin/env python3
"""Instructions per event of each stage of ``export``, counted by callgrind.

Times on this shared VM move by up to 2x; instruction counts do not. Each stage runs in
a child process under ``valgrind --tool=callgrind`` twice, over N and 2N events of the
same input; the difference divided by N is what one event costs, start-up excluded.
Stages are cumulative (each adds one step to the one before), so the table gives each
step's own cost as the difference of two rows:

* read: ``read_event`` of every line;
* filter: + the benchmark filter;
* format: + json formatting of the matching events;
* export: ``export_streams`` file -> file (line feed, pipeline, buffer, write);
* queue/batch: + an exporter's queue: every encoded line offered, batches taken;

Run: ``python scripts/profile_stages.py [--events N]`` (needs valgrind).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

STAGES = ("read", "filter", "format", "export", "queue")
BEFORE = {"filter": "read", "format": "filter", "export": "format", "queue": "format"}


def run_stage(stage: str, src: Path, fmt_name: str) -> None:
    """One stage over every line of ``src`` (in the child process)."""
    import io

    from bench_export import FILTER

    from exporter.cli.export import export_streams
    from exporter.delivery.queue import EventQueue
    from exporter.filter import compile_filter
    from exporter.formats import FormatSpec, make_formatter
    from exporter.formats.reader import read_event

    lines = src.read_bytes().splitlines()
    matches = compile_filter(FILTER).matches
    fmt = make_formatter(FormatSpec(format=fmt_name), newline=True)  # type: ignore[arg-type]
    if stage == "read":
        for line in lines:
            read_event(line)
    elif stage == "filter":
        for line in lines:
            matches(read_event(line))
    elif stage == "format":
        for line in lines:
            event = read_event(line)
            if matches(event):
                fmt(event)
    elif stage == "export":
        with src.open("rb") as inp:
            export_streams([(str(src), inp)], io.BytesIO(), fmt, matches, sys.stderr)
    elif stage == "queue":
        queue = EventQueue(1 << 30, 1 << 40, "block", lambda reason, n: None)
        encoded = []
        for line in lines:
            event = read_event(line)
            if matches(event):
                encoded.append(fmt(event))
        for item in encoded:  # the producer's part; sealed batches dropped as taken
            queue.offer(item)
            if queue._sealed:
                queue._sealed.popleft()


def count(stage: str, src: Path, fmt_name: str) -> int:
    """Instructions of one child process running ``stage`` over ``src``."""
    with tempfile.NamedTemporaryFile() as out:
        done = subprocess.run(  # one hash seed: dict layouts, so counts, the same each run
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={out.name}",
                sys.executable,
                __file__,
                "--child",
                stage,
                str(src),
                fmt_name,
            ],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": "0"},
        )
    found = re.search(r"Collected : (\d+)", done.stderr)
    assert found, done.stderr
    return int(found.group(1))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        run_stage(sys.argv[2], Path(sys.argv[3]), sys.argv[4])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--format", default="json", choices=("json", "tab-text"))
    parser.add_argument("--stages", default=",".join(STAGES))
    args = parser.parse_args()
    from bench_export import make_events, write_input

    n = args.events
    with tempfile.TemporaryDirectory(prefix="profile-stages-") as tmp:
        events = make_events(2 * n, 1)
        small, large = Path(tmp) / "n.ndjson", Path(tmp) / "2n.ndjson"
        write_input(events[:n], small)
        write_input(events, large)
        print(f"{n} events, {args.format}; instructions per event (callgrind, 2N - N runs)")
        seen: dict[str, float] = {}
        for stage in args.stages.split(","):
            per_event = (count(stage, large, args.format) - count(stage, small, args.format)) / n
            seen[stage] = per_event
            base = seen.get(BEFORE.get(stage, ""))
            extra = f"   (this step {per_event - base:>9,.0f})" if base is not None else ""
            print(f"  {stage:8s} {per_event:>9,.0f}{extra}", flush=True)


if __name__ == "__main__":
    main()
