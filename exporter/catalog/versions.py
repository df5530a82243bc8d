"""Dovecot versions: the one a user states, and those the documents give for an event.

The documents write versions as ``v2.3.7``, several of them for one change when it came
in Dovecot CE and Pro at different numbers (``v2.4.0, v3.0.0``: CE 2.x, Pro 3.x),
sometimes followed by a remark (``v2.3.18 (Removed for performance reasons)``).
"""

from __future__ import annotations

import re
from typing import Final, TypeAlias

Version: TypeAlias = tuple[int, ...]

_STATED: Final = re.compile(r"v?(\d+(?:\.\d+){0,3})")
_LISTED: Final = re.compile(r"\bv(\d+(?:\.\d+)+)")


def parse_version(text: str) -> Version | None:
    """``2.3.19.1``, ``2.4``, ``v2.4.1`` as a tuple of numbers; None if it is not one."""
    match = _STATED.fullmatch(text.strip())
    return None if match is None else _numbers(match[1])


def format_version(version: Version) -> str:
    return ".".join(map(str, version))


def reached(listing: str | None, version: Version) -> str | None:
    """The version of ``listing`` (``"v2.4.0, v3.0.0"``) that ``version`` is at or past, as
    written, or None. Of several, the one of the same major number counts (a Pro 3.x
    version is not compared with a CE 2.x one); with none of that major, the earliest."""
    if not listing:
        return None
    listed = [(_numbers(match[1]), f"v{match[1]}") for match in _LISTED.finditer(listing)]
    same = [entry for entry in listed if entry[0][0] == version[0]]
    candidates = same or sorted(listed)[:1]
    for numbers, written in candidates:
        if _padded(version, numbers) >= _padded(numbers, version):
            return written
    return None


def _numbers(text: str) -> Version:
    return tuple(int(part) for part in text.split("."))


def _padded(version: Version, other: Version) -> Version:
    return version + (0,) * (len(other) - len(version))
