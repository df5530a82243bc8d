"""The real Dovecot captures shipped under tests/data (2.3.19.1 and 2.4.4), and ways to
load them."""

from __future__ import annotations

from typing import Final

from exporter.event import Event
from exporter.formats import FormatSpec, parse_fields, parse_include
from exporter.formats.reader import read_event
from tests.support import DATA

EVENTS_FILE: Final = DATA / "dovecot-events.ndjson"
CONF_23: Final = DATA / "dovecot.conf"
"""The 2.3.19.1 capture's whole dovecot.conf (65 event_exporter and 65 metric blocks)."""
CONF_24: Final = DATA / "dovecot24.conf"
"""The 2.4.4 capture's whole dovecot.conf (112 event_exporter and 112 metric blocks)."""
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
    """The 2.3 capture's ``config``, with 2.3's byte rules."""
    fmt, time_format, include = CONFIGS[config]
    return FormatSpec(
        format=fmt,  # type: ignore[arg-type]
        time_format=time_format,  # type: ignore[arg-type]
        include=parse_include(include),
        dovecot_compat="2.3",
    )


def expected_bodies(config: str) -> list[bytes]:
    """Dovecot's bodies for ``config``: one per line, the file ends with a newline."""
    data = (EXPECTED_DIR / f"{config}.txt").read_bytes()
    assert data.endswith(b"\n")
    return data[:-1].split(b"\n")


EVENTS_24_FILE: Final = DATA / "dovecot24-events.ndjson"
EXPECTED_24_DIR: Final = DATA / "dovecot24-expected"
_ALL = "name hostname timestamps categories fields"
_FIELDSEL24 = (
    "user cmd_name tagged_reply_state last_run_time net_in_bytes duration nonexistent_field "
    "reason_code mailbox user"
)
# config name -> (format, time_format, exporter_include, fields), as Dovecot 2.4.4 had them
CONFIGS_24: Final[dict[str, tuple[str, str, str, str]]] = {
    "json_rfc3339_all": ("json", "rfc3339", _ALL, ""),
    "json_unix_all": ("json", "unix", _ALL, ""),
    "json_rfc3339_name_fields": ("json", "rfc3339", "name fields", ""),
    "json_rfc3339_host_ts": ("json", "rfc3339", "hostname timestamps", ""),
    "json_unix_fieldsel24": ("json", "unix", _ALL, _FIELDSEL24),
    "tabtext_rfc3339_all": ("tab-text", "rfc3339", _ALL, ""),
    "tabtext_unix_all": ("tab-text", "unix", _ALL, ""),
    "tabtext_unix_name_fields": ("tab-text", "unix", "name fields", ""),
    "tabtext_rfc3339_cat_fields": ("tab-text", "rfc3339", "categories fields", ""),
}


def sample_events_24() -> list[Event]:
    return [read_event(line) for line in EVENTS_24_FILE.read_bytes().splitlines()]


def spec_for_24(config: str) -> FormatSpec:
    """The 2.4 capture's ``config``, with 2.4's byte rules."""
    fmt, time_format, include, fields = CONFIGS_24[config]
    return FormatSpec(
        format=fmt,  # type: ignore[arg-type]
        time_format=time_format,  # type: ignore[arg-type]
        include=parse_include(include),
        fields=parse_fields(fields),
        dovecot_compat="2.4",
    )


def expected_file_24(config: str) -> bytes:
    """What Dovecot 2.4.4's file driver wrote for ``config``: each event, then ``\\n``."""
    return (EXPECTED_24_DIR / f"{config}.txt").read_bytes()
