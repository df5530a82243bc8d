"""/metrics label values are safe whatever text reaches them: escaped, capped, distinct."""

from __future__ import annotations

import re

import pytest

from exporter.config import parse_config
from exporter.observe.prometheus import LABEL_CHARS, render
from exporter.routing import Pipeline

pytestmark = pytest.mark.anyio

CONFIG = """
[exporter.out]
destination = "drop"
[metric.all]
filter = "event=*"
exporter = "out"
"""
SAMPLE = re.compile(r'event_exporter_exporter_dropped_total\{exporter="out",reason="(.*)"\} (\d+)')


async def test_a_label_value_with_escapes_or_a_receivers_essay_stays_one_safe_line() -> None:
    """A second line of defence: should outside text reach a label (a drop reason that
    quotes a receiver), its control characters are escaped and its length capped, and
    two texts cut alike stay two series."""
    pipeline = Pipeline.from_config(parse_config(CONFIG))
    dropped = pipeline.exporters["out"].stats.dropped
    essay = "HTTP 400: \x1b[2J\x1b]0;pwned\x07" + "x" * 10_000
    dropped[essay + "a"] = 1
    dropped[essay + "b"] = 2
    dropped['quote " and \\ and \n newline \u202e'] = 3
    text = render(pipeline, {})
    assert not re.search(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u202e]", text)  # only \n, ending lines
    samples = {int(count): value for value, count in SAMPLE.findall(text)}
    assert set(samples) == {1, 2, 3}
    assert samples[1] != samples[2]
    for count in (1, 2):
        assert samples[count].startswith("HTTP 400: \\\\x1b[2J\\\\x1b]0;pwned\\\\x07xxx")
        assert re.search(r"x\.\.\.[0-9a-f]{8}$", samples[count])
        assert len(samples[count]) < LABEL_CHARS + 40
    assert samples[3] == 'quote \\" and \\\\ and \\n newline \\\\u202e'
