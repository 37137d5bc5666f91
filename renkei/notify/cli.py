"""``renkei notify prune``: delete settled events older than the retention period now (the
server also does it every hour; this is for cron, or after changing the period)."""

from __future__ import annotations

import argparse
from datetime import timedelta
from typing import Any

from renkei.cli import CliError
from renkei.config import Settings


def cmd_prune(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from renkei.clock import SystemClock
    from renkei.notify.retention import prune
    from renkei.store.db import Database

    if args.keep_days <= 0:
        raise CliError("--keep-days must be at least 1")
    db = Database(str(settings.database_url))
    try:
        pruned = prune(db, SystemClock().now(), timedelta(days=args.keep_days))
    finally:
        db.dispose()
    return {
        "ok": True,
        "events": pruned.events,
        "subscription_events": pruned.subscription_events,
        "oldest_kept": pruned.floor,
    }


def register(sub: Any) -> None:
    notify = sub.add_parser("notify", help="the notification event stream: retention")
    cmds = notify.add_subparsers(dest="notify_command", required=True)
    prune = cmds.add_parser("prune", help="delete settled events older than --keep-days")
    prune.add_argument("--keep-days", type=float, default=7.0)
    prune.add_argument("--json", action="store_true")
    prune.set_defaults(func=cmd_prune)
