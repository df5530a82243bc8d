"""Delivery: an exporter at run time, its queue or spool, the one retry loop, dead letters,
destinations, and the shutdown lifecycle."""
