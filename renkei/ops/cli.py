"""``renkei backup``, ``renkei restore`` and ``renkei backup-verify``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from renkei.config import Settings


def _backup(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from renkei.cli import CliError
    from renkei.ops.backup import BackupError, create_backup, prune_generations

    directory = Path(args.dir) if args.dir else settings.data_dir / "backups"
    try:
        result = create_backup(str(settings.database_url), directory)
        removed = prune_generations(directory, args.keep)
    except BackupError as exc:
        raise CliError(str(exc)) from exc
    return {
        "ok": True,
        "file": str(result.path),
        "counts": result.manifest["counts"],
        "pruned": [p.name for p in removed],
    }


def _restore(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from renkei.cli import CliError
    from renkei.ops.backup import BackupError, restore_backup

    if not args.yes:
        raise CliError("restore replaces the whole database; add --yes to confirm", exit_code=2)
    try:
        manifest = restore_backup(Path(args.file), str(settings.database_url))
    except BackupError as exc:
        raise CliError(str(exc)) from exc
    return {"ok": True, "restored": manifest["file"], "counts": manifest["counts"]}


def _verify(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from renkei.cli import CliError
    from renkei.ops.backup import BackupError, verify_backup

    try:
        result = verify_backup(Path(args.file), str(settings.database_url))
    except BackupError as exc:
        raise CliError(str(exc)) from exc
    if not result["ok"]:
        raise CliError("; ".join(result["problems"]))
    return result


def register(sub: Any) -> None:
    backup = sub.add_parser(
        "backup", help="write a backup (with manifest) and prune old generations"
    )
    backup.add_argument("--dir", help="backup folder (default: $RENKEI_DATA_DIR/backups)")
    backup.add_argument("--keep", type=int, default=14, help="generations to keep (default 14)")
    backup.add_argument("--json", action="store_true")
    backup.set_defaults(func=_backup)

    restore = sub.add_parser("restore", help="replace the database with a backup")
    restore.add_argument("file")
    restore.add_argument("--yes", action="store_true", help="confirm replacing the database")
    restore.add_argument("--json", action="store_true")
    restore.set_defaults(func=_restore)

    verify = sub.add_parser(
        "backup-verify", help="restore a backup into a scratch database and check it"
    )
    verify.add_argument("file")
    verify.add_argument("--json", action="store_true")
    verify.set_defaults(func=_verify)
