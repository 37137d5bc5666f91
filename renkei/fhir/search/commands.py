"""``renkei reindex``: rebuild the search indexes (and sharing facts) after the definitions
change, or after an upgrade that adds a derived table."""

from __future__ import annotations

import argparse
from typing import Any
from zoneinfo import ZoneInfo

from renkei.cli import CliError
from renkei.config import Settings


def cmd_reindex(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """Re-extract search rows and sharing facts with the writer the app uses
    (``build_services``): after a release that adds a derived table, this fills it."""
    from renkei.access import SharingFactWriter
    from renkei.fhir.search.definitions import resource_types
    from renkei.fhir.search.indexer import reindex_all
    from renkei.store.db import Database
    from renkei.store.migrate import upgrade

    if args.type is not None and args.type not in resource_types():
        raise CliError(f"unknown resource type {args.type!r}")
    upgrade(str(settings.database_url))
    db = Database(str(settings.database_url))
    try:
        writer = SharingFactWriter(ZoneInfo(settings.default_timezone))
        count = reindex_all(db.session, writer, res_type=args.type, batch_size=args.batch)
    finally:
        db.dispose()
    return {"ok": True, "reindexed": count}


def register(sub: Any) -> None:
    """Add ``reindex`` to the ``renkei`` command (listed in ``renkei.cli.EXTENSION_MODULES``)."""
    parser = sub.add_parser(
        "reindex", help="re-extract the search index rows and sharing facts of every resource"
    )
    parser.add_argument("--type", default=None, help="only this resource type")
    parser.add_argument("--batch", type=int, default=500, help="resources per transaction")
    parser.add_argument("--json", action="store_true")
    parser.set_defaults(func=cmd_reindex)
