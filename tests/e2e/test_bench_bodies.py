"""scripts/bench_bodies.py runs (a small count), so it cannot rot: every batched body of
the registry measured beside ndjson, each with a figure and a ratio."""

from __future__ import annotations

import re
import subprocess
import sys

from drivers.bodies.registry import KINDS
from tests.support import REPO


def test_the_bodies_benchmark_measures_every_batched_body() -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "bench_bodies.py"), "--count", "300",
         "--repeat", "1"],
        capture_output=True, text=True, timeout=240, check=False, cwd=REPO,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr + done.stdout
    rows = {
        found[1]: float(found[3])
        for line in done.stdout.splitlines()
        if (found := re.fullmatch(r"(\S+)\s+([\d,]+)\s+([\d.]+)", line))
    }
    assert set(rows) == set(KINDS) - {"single"}, done.stdout
    assert rows["ndjson"] == 1.0
    assert all(ratio > 0 for ratio in rows.values())
