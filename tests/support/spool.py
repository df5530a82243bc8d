"""A daemon configuration for the spool crash tests: one source, a spooled exporter posting
to a (flaky) receiver, quick retries."""

from __future__ import annotations

from pathlib import Path

FLAKY = ["500", "ok", "503:retry-after=0", "ok", "ok", "429", "ok"] * 30
"""A receiver script: errors, a pause, a refusal, between successes."""


def spooled_daemon_config(tmp_path: Path, url: str, source: str, exporter: str = "") -> Path:
    """``c.toml`` in ``tmp_path``: the ``[source.in]`` body ``source``, an exporter
    spooling to ``spool.db`` and posting to ``url`` (plus ``exporter`` settings), self-metrics
    on a free port."""
    config = tmp_path / "c.toml"
    config.write_text(
        f"""
[global]
dead_letter = "{tmp_path / "dead.ndjson"}"
summary_interval = 0
shutdown_timeout = 5.0
metrics_listen = "127.0.0.1:0"
[source.in]
{source}
[exporter.out]
destination = "{url}"
spool = "{tmp_path / "spool.db"}"
batch_max_age = 0.02
retry_initial_delay = 0.01
retry_max_delay = 0.05
{exporter}
[metric.all]
filter = "event=e"
exporter = "out"
"""
    )
    return config
