#!/usr/bin/env python3
"""Benchmark ``export`` against the floor of what Python does with the same lines.

Everything is measured in one run on this machine, interleaved, best of ``--repeat``;
read the ratios, not the absolute figures (the machine is shared and noisy).

* export json / tab-text: parse -> filter -> format -> write, as the CLI does
  (``export_streams``), from a file of Dovecot json events to a file;
* floor: ``orjson.loads`` + ``orjson.dumps`` + write of the same lines in a tight loop;
* formatting alone of in-memory events beside ``orjson.dumps`` of each event as a plain
  dict.

Goals (issue 2): json export >= 0.4 of the floor, json formatting >= 0.5 of orjson.dumps,
tab-text within 1.5x of json.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from exporter.cli.export import export_streams
from exporter.event import Event, Timestamp
from exporter.filter import compile_filter
from exporter.formats import FormatSpec, make_formatter
from exporter.formats.reader import read_event

SAMPLES = Path(__file__).resolve().parent.parent / "tests" / "data" / "dovecot-events.ndjson"
FILTER = "event=imap_command_finished OR event=auth_* OR event=mail_*"


def make_events(count: int, seed: int) -> list[Event]:
    """Realistic events: the real Dovecot capture, with varied users, sessions and values.

    As in the capture, consecutive events handled in one ioloop run of Dovecot's stats
    process (here 1 to 4) share one end_time, which can even precede their start_time.
    """
    rng = random.Random(seed)
    templates = [read_event(line) for line in SAMPLES.read_bytes().splitlines()]
    events: list[Event] = []
    clock = templates[0].start_ns or 0
    end = clock
    group_left = 0
    for i in range(count):
        base = templates[i % len(templates)]
        clock += rng.randrange(50, 900) * 1_000  # microseconds between events
        if group_left == 0:
            group_left = rng.randrange(1, 5)
            end = clock + rng.randrange(-200, 2_000) * 1_000
        group_left -= 1
        fields = dict(base.fields)
        for key, value in fields.items():
            if key in ("user", "original_user", "translated_user"):
                fields[key] = f"user{rng.randrange(5000):04d}@example.org"
            elif key == "session":
                fields[key] = "".join(rng.choices("ABCDEFGHabcdefgh0123456789+/", k=16))
            elif key == "last_run_time":
                fields[key] = Timestamp(clock - rng.randrange(1, 50) * 1_000)
            elif type(value) is int:
                fields[key] = rng.randrange(0, max(2, value * 2))
        events.append(
            Event(
                base.name,
                "mail01.example.org",
                clock,
                end,
                list(base.categories),
                fields,
            )
        )
    return events


def write_input(events: list[Event], path: Path) -> None:
    fmt = make_formatter(FormatSpec(format="json", time_format="unix"), newline=True)
    with path.open("wb") as f:
        f.write(b"".join(fmt(e) for e in events))


def time_export(src: Path, dst: Path, fmt_name: str) -> float:
    spec = FormatSpec(format=fmt_name)  # type: ignore[arg-type]
    format_line = make_formatter(spec, newline=True)
    matches = compile_filter(FILTER).matches
    with src.open("rb") as inp, dst.open("wb") as out:
        start = time.perf_counter()
        counts = export_streams([(str(src), inp)], out, format_line, matches, sys.stderr)
        elapsed = time.perf_counter() - start
    assert counts.rejected == 0, counts
    return elapsed


def time_floor(src: Path, dst: Path) -> float:
    """orjson.loads + orjson.dumps + write per 256 KiB, the loop export cannot beat."""
    loads, dumps, append_nl = orjson.loads, orjson.dumps, orjson.OPT_APPEND_NEWLINE
    with src.open("rb") as inp, dst.open("wb") as out:
        fd = out.fileno()
        start = time.perf_counter()
        pending = b""
        while chunk := inp.read1(1 << 18):
            lines = (pending + chunk).split(b"\n")
            pending = lines.pop()
            buf = bytearray()
            for line in lines:
                buf += dumps(loads(line), option=append_nl)
            os.write(fd, buf)
        elapsed = time.perf_counter() - start
    return elapsed


def time_loop(func: Callable[[object], bytes], items: list[object]) -> float:
    start = time.perf_counter()
    for item in items:
        func(item)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    n = args.events

    with tempfile.TemporaryDirectory(prefix="bench-export-") as tmp:
        src = Path(tmp) / "events.ndjson"
        dst = Path(tmp) / "out"
        events = make_events(n, args.seed)
        write_input(events, src)
        size = src.stat().st_size
        print(f"{n} events, {size / n:.0f} bytes/event, filter: {FILTER}")

        dicts: list[object] = [orjson.loads(line) for line in src.read_bytes().splitlines()]
        in_memory = [read_event(line) for line in src.read_bytes().splitlines()]
        json_fmt = make_formatter(FormatSpec())
        tab_fmt = make_formatter(FormatSpec(format="tab-text"))

        best: dict[str, float] = {}
        runs: list[tuple[str, Callable[[], float]]] = [
            ("floor: orjson loads+dumps+write", lambda: time_floor(src, dst)),
            ("export json", lambda: time_export(src, dst, "json")),
            ("export tab-text", lambda: time_export(src, dst, "tab-text")),
            ("orjson.dumps(dict)", lambda: time_loop(orjson.dumps, dicts)),
            ("format json (in memory)", lambda: time_loop(json_fmt, in_memory)),  # type: ignore[arg-type]
            ("format tab-text (in memory)", lambda: time_loop(tab_fmt, in_memory)),  # type: ignore[arg-type]
        ]
        for _ in range(args.repeat):
            for name, run in runs:
                elapsed = run()
                best[name] = min(best.get(name, elapsed), elapsed)

    out = io.StringIO()
    for name, elapsed in best.items():
        out.write(f"  {name:32s} {n / elapsed:>12,.0f} events/s\n")
    floor = best["floor: orjson loads+dumps+write"]
    dumps = best["orjson.dumps(dict)"]
    ratios = [
        ("json export / floor", floor / best["export json"], ">= 0.4"),
        ("tab-text export / floor", floor / best["export tab-text"], ""),
        ("json format / orjson.dumps", dumps / best["format json (in memory)"], ">= 0.5"),
        (
            "tab-text time / json time (export)",
            best["export tab-text"] / best["export json"],
            "<= 1.5",
        ),
        (
            "tab-text time / json time (format)",
            best["format tab-text (in memory)"] / best["format json (in memory)"],
            "",
        ),
    ]
    out.write("ratios (same run):\n")
    for name, value, goal in ratios:
        out.write(f"  {name:36s} {value:6.2f}   {('goal ' + goal) if goal else ''}\n")
    sys.stdout.write(out.getvalue())


if __name__ == "__main__":
    main()
