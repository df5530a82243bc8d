"""Dovecot versions: the one a user states, and those the documents give for an event.

The documents write versions as ``v2.3.7``, several of them for one change when it came
in Dovecot CE and Pro at different numbers (``v2.4.0, v3.0.0``: CE 2.x, Pro 3.x),
sometimes followed by a remark (``v2.3.18 (Removed for performance reasons)``). A stated
version may be a series (``2.3``: any 2.3.x), and is then compared only as far as it goes.
"""

from __future__ import annotations

import re
from typing import Final, TypeAlias

Version: TypeAlias = tuple[int, ...]

# What `dovecot --version` prints works too: "2.3.21 (47349e2482)".
_STATED: Final = re.compile(r"v?(\d+(?:\.\d+){0,3})(?: +\([0-9a-f]+\))?")
_LISTED: Final = re.compile(r"\bv(\d+(?:\.\d+)+)")


def parse_version(text: str) -> Version | None:
    """``2.3.19.1``, ``2.4``, ``v2.4.1`` as a tuple of numbers; None if it is not one."""
    match = _STATED.fullmatch(text.strip())
    return None if match is None else _numbers(match[1])


def format_version(version: Version) -> str:
    return ".".join(map(str, version))


def reached(listing: str | None, version: Version) -> str | None:
    """The version of ``listing`` (``"v2.4.0, v3.0.0"``) that ``version`` is surely at or
    past, as written, or None (not reached, or, for a series, not surely)."""
    found = _listed(listing, version)
    if found is None:
        return None
    numbers, written = found
    head, rest = numbers[: len(version)], numbers[len(version) :]
    return written if version > head or (version == head and not any(rest)) else None


def before(listing: str | None, version: Version) -> bool:
    """Whether ``version`` is surely before the version ``listing`` gives (for a series:
    all of it is)."""
    found = _listed(listing, version)
    return found is not None and version < found[0][: len(version)]


def _listed(listing: str | None, version: Version) -> tuple[Version, str] | None:
    """Of the versions in ``listing``, the one of ``version``'s major number (a Pro 3.x
    version is not compared with a CE 2.x one); with none of that major, the earliest."""
    if not listing:
        return None
    listed = [(_numbers(match[1]), f"v{match[1]}") for match in _LISTED.finditer(listing)]
    same = [entry for entry in listed if entry[0][0] == version[0]]
    candidates = same or sorted(listed)[:1]
    return candidates[0] if candidates else None


def _numbers(text: str) -> Version:
    return tuple(int(part) for part in text.split("."))
