"""The documented category tree, and the shipped ``catalog.json`` it comes from.

A leaf: it imports nothing of ours, so the event model can ask which categories an event
gets with ``mail`` (``storage`` and ``mailbox``, as Dovecot exports them) without importing
the catalog's lookups, which import the filter language, which imports the event model.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

_SHIPPED = Path(__file__).with_name("catalog.json")


@functools.cache
def shipped_data() -> Mapping[str, Any]:
    """``catalog.json`` as built by ``scripts/build_catalog.py`` (read once; not to be
    changed by its users)."""
    data: Mapping[str, Any] = orjson.loads(_SHIPPED.read_bytes())
    return data


@functools.cache
def _parents() -> dict[str, str | None]:
    categories = shipped_data()["dovecot"]["categories"]
    return {name: entry["parent"] for name, entry in categories.items()}


def category_path(name: str, parents: Mapping[str, str | None] | None = None) -> list[str]:
    """``name`` and its ancestors, nearest first: ``["mail", "mailbox", "storage"]``
    (``parents`` maps a category to its parent; the documented tree by default)."""
    parents = _parents() if parents is None else parents
    path = [name]
    parent = parents.get(name)
    while parent is not None and parent not in path:
        path.append(parent)
        parent = parents.get(parent)
    return path


@functools.lru_cache(maxsize=4096)
def lineage(name: str) -> tuple[str, ...]:
    """``name`` after its documented ancestors, root first (worked out once per name)."""
    return tuple(reversed(category_path(name)))
