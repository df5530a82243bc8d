"""The real Dovecot capture shipped under tests/data, and ways to load it."""

from __future__ import annotations

from typing import Final

from exporter.event import Event
from exporter.formats import FormatSpec, parse_include
from exporter.formats.reader import read_event
from tests.support import DATA

EVENTS_FILE: Final = DATA / "dovecot-events.ndjson"
EXPECTED_DIR: Final = DATA / "dovecot-expected"

# config name -> (format, time format, exporter_include), as Dovecot was configured
CONFIGS: Final[dict[str, tuple[str, str, str]]] = {
    "json_rfc3339_all": ("json", "rfc3339", "name hostname timestamps categories fields"),
    "json_rfc3339_name_fields": ("json", "rfc3339", "name fields"),
    "json_rfc3339_host_ts": ("json", "rfc3339", "hostname timestamps"),
    "json_unix_categories": ("json", "unix", "categories"),
    "json_unix_none": ("json", "unix", ""),
    "tabtext_unix_all": ("tab-text", "unix", "name hostname timestamps categories fields"),
    "tabtext_rfc3339_all": ("tab-text", "rfc3339", "name hostname timestamps categories fields"),
    "tabtext_unix_name_fields": ("tab-text", "unix", "name fields"),
    "tabtext_rfc3339_none": ("tab-text", "rfc3339", ""),
}


def sample_lines() -> list[bytes]:
    return EVENTS_FILE.read_bytes().splitlines()


def sample_events() -> list[Event]:
    return [read_event(line) for line in sample_lines()]


def spec_for(config: str) -> FormatSpec:
    fmt, time_format, include = CONFIGS[config]
    return FormatSpec(
        format=fmt,  # type: ignore[arg-type]
        time_format=time_format,  # type: ignore[arg-type]
        include=parse_include(include),
    )


def expected_bodies(config: str) -> list[bytes]:
    """Dovecot's bodies for ``config``: one per line, the file ends with a newline."""
    data = (EXPECTED_DIR / f"{config}.txt").read_bytes()
    assert data.endswith(b"\n")
    return data[:-1].split(b"\n")
