"""The catalog of documented events: Dovecot's events with their fields and categories,
Stalwart's events with their levels. Built by ``scripts/build_catalog.py`` from the
documents into ``catalog.json``, shipped with the package.

    catalog = load_catalog()
    catalog.find("imap_*")                        # events by name mask, ignoring case
    catalog.fields_of("imap_command_finished")    # field -> description
    catalog.closest_event("imap_comand_finished") # "imap_command_finished"
    print(describe(catalog.find("auth.*", "stalwart"), fields=False))
"""

from __future__ import annotations

from exporter.catalog.model import (
    SOURCES,
    Catalog,
    DovecotEvent,
    Event,
    Source,
    StalwartEvent,
    load_catalog,
)
from exporter.catalog.show import as_json, categories_as_json, describe, describe_categories

__all__ = [
    "SOURCES",
    "Catalog",
    "DovecotEvent",
    "Event",
    "Source",
    "StalwartEvent",
    "as_json",
    "categories_as_json",
    "describe",
    "describe_categories",
    "load_catalog",
]
