"""The catalog of documented events: Dovecot's events with their fields and categories,
Stalwart's events with their levels. Built by ``scripts/build_catalog.py`` from the
documents into ``catalog.json``, shipped with the package.

    from exporter.catalog.model import load_catalog
    from exporter.catalog.show import describe_events

    catalog = load_catalog()
    catalog.find("imap_*")                        # events by name mask, ignoring case
    catalog.fields_of("imap_command_finished")    # field -> description
    catalog.closest_event("imap_comand_finished") # "imap_command_finished"
    print(describe_events(catalog.find("auth.*", "stalwart"), fields=False))

The package imports nothing itself: :mod:`exporter.catalog.tree` is a leaf the event model
uses, and importing the lookups (:mod:`.model`, which imports the filter language) must
stay the choice of whoever needs them. The document parsers that build ``catalog.json``
(:mod:`.build`) are never imported at run time.
"""
