"""``renkei audit verify|seal|break-glass``: the operator's view of the audit log."""

from __future__ import annotations

import argparse
from typing import Any

from renkei.config import Settings


def _key(settings: Settings, *, create: bool) -> Any:
    from renkei.audit.key import SealKey, key_path

    return SealKey.load(key_path(settings.data_dir, settings.audit_key_file), create=create)


def cmd_verify(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """Exit 0 with ``{"ok": true}`` when intact; exit 1 naming the first bad seq."""
    from renkei.audit.chain import verify
    from renkei.audit.errors import AuditError
    from renkei.cli import CliError
    from renkei.store.db import Database

    db = Database(str(settings.database_url))
    try:
        key = _key(settings, create=False)
        with db.session() as session:
            report = verify(session, key).as_dict()
    except AuditError as exc:
        raise CliError(str(exc)) from exc
    finally:
        db.dispose()
    if not report["ok"]:
        first = report["problems"][0]
        raise CliError(
            f"audit log damaged at seq {first['seq']}: {first['detail']}", payload=report
        )
    return report


def cmd_seal(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from renkei.audit.chain import seal
    from renkei.clock import SystemClock
    from renkei.store.db import Database

    db = Database(str(settings.database_url))
    try:
        key = _key(settings, create=True)
        with db.session(write=True) as session:
            return {"ok": True, **seal(session, key, SystemClock().now())}
    finally:
        db.dispose()


def cmd_break_glass(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """Break-the-glass accesses to review: newest first."""
    import json

    import sqlalchemy as sa

    from renkei.audit.models import audit_record
    from renkei.store.db import Database

    db = Database(str(settings.database_url))
    try:
        with db.session() as session:
            stmt = (
                sa.select(audit_record.c.seq, audit_record.c.body)
                .where(audit_record.c.break_glass.is_(True))
                .order_by(audit_record.c.seq.desc())
                .limit(args.limit)
            )
            items = []
            for row in session.execute(stmt):
                body = json.loads(row.body)
                items.append(
                    {
                        "seq": row.seq,
                        "recorded": body["recorded"],
                        "subject": body.get("subject"),
                        "organization_id": body.get("organization_id"),
                        "role": body.get("role"),
                        "patients": body.get("patients"),
                        "reason": body.get("purpose"),
                        "interaction": body.get("interaction"),
                        "status": body.get("status"),
                    }
                )
    finally:
        db.dispose()
    return {"ok": True, "count": len(items), "accesses": items}


def register(sub: Any) -> None:
    audit = sub.add_parser("audit", help="audit log: verify the chain, seal it, review")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    verify = audit_sub.add_parser("verify", help="check the hash chain, MACs, seals and head")
    verify.add_argument("--json", action="store_true")
    verify.set_defaults(func=cmd_verify)
    seal = audit_sub.add_parser("seal", help="seal the chain head now (run from cron)")
    seal.add_argument("--json", action="store_true")
    seal.set_defaults(func=cmd_seal)
    btg = audit_sub.add_parser("break-glass", help="list break-the-glass accesses to review")
    btg.add_argument("--json", action="store_true")
    btg.add_argument("--limit", type=int, default=100)
    btg.set_defaults(func=cmd_break_glass)


__all__ = ["cmd_break_glass", "cmd_seal", "cmd_verify", "register"]
