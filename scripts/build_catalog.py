#!/usr/bin/env python3
"""Build ``exporter/catalog/catalog.json`` from the source documents (issue 7).

The documents are the seeds the project started from, named by number as their README
says: ``000_*`` Dovecot 2.4 list of events (reStructuredText), ``001_*`` the same as the
documentation site renders it, ``002_*`` the Dovecot 2.3 wiki's list, ``003_*`` Stalwart's
events, ``004_*`` Dovecot's events design. Rerun it whenever they or the parsers change;
it rewrites the data file and prints what it holds and anything it could not read.

    python scripts/build_catalog.py [--seeds DIR] [--output FILE] [--verbose]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from exporter.catalog.build import Sources, build, dumps  # noqa: E402

DEFAULT_SEEDS = ROOT.parent / "shared" / "seeds"
DEFAULT_OUTPUT = ROOT / "exporter" / "catalog" / "catalog.json"


def read_seed(seeds: Path, number: str) -> str:
    found = sorted(seeds.glob(f"{number}_*.txt"))
    if len(found) != 1:
        raise SystemExit(f"build_catalog: expected one {number}_*.txt in {seeds}, found {found}")
    return found[0].read_text(encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=Path, default=DEFAULT_SEEDS, help="the documents")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="the data file")
    parser.add_argument(
        "--verbose", action="store_true", help="list how the site's field lists differ"
    )
    args = parser.parse_args(argv)
    if not args.seeds.is_dir():
        parser.error(f"no directory {args.seeds}: give --seeds DIR")
    sources = Sources(
        dovecot_rst=read_seed(args.seeds, "000"),
        dovecot_site=read_seed(args.seeds, "001"),
        dovecot_wiki=read_seed(args.seeds, "002"),
        stalwart=read_seed(args.seeds, "003"),
        dovecot_design=read_seed(args.seeds, "004"),
    )
    data, report = build(sources)
    text = dumps(data)
    old = args.output.read_text(encoding="utf-8") if args.output.exists() else None
    args.output.write_text(text, encoding="utf-8")

    dovecot, stalwart = data["dovecot"], data["stalwart"]
    events = dovecot["events"].values()
    by_doc = {doc: sum(doc in event["docs"] for event in events) for doc in data["documents"]}
    state = "unchanged" if old == text else "written"
    print(f"{args.output} ({len(text.encode()):,} bytes, {state})")
    print(
        f"dovecot: {len(dovecot['events'])} events ({by_doc['dovecot-2.4']} in the 2.4 list,"
        f" {by_doc['dovecot-2.4-site']} on the site, {by_doc['dovecot-2.3']} in the 2.3 wiki),"
        f" {len(dovecot['categories'])} categories, {len(dovecot['global_fields'])} global fields,"
        f" {len({f for e in events for f in e.get('fields', {})})} distinct 2.4 fields,"
        f" {len({f for e in events for f in e.get('fields_v23', {})})} distinct 2.3 fields"
    )
    print(
        f"stalwart: {len(stalwart['events'])} events, {len(stalwart['levels'])} levels,"
        f" {len(stalwart['key_types'])} key types"
    )
    differences = report.site_field_set_differences
    print(
        f"check: the fields resolved from the 2.4 list equal the site's for"
        f" {report.site_field_sets_equal} of {report.site_field_sets_equal + len(differences)}"
        f" events in both (the site is a newer revision){':' if args.verbose else ''}"
    )
    if args.verbose:
        for name, (only_source, only_site) in differences.items():
            print(f"  {name}: only in the list {only_source}, only on the site {only_site}")
    for note in report.notes:
        print(f"note: {note}")
    for warning in report.warnings:
        print(f"warning: {warning}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
