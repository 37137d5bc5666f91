"""``renkei roster ...``: set up a real group from a file in minutes, and ask who is on duty.

Listed in ``renkei.cli.EXTENSION_MODULES``; :func:`register` adds the sub-commands.

    renkei roster import deploy/examples/roster-group.yaml --json
    renkei roster who --group GROUP_ID [--at 2026-12-31T23:00] --json
    renkei roster list --json

The CLI acts as the operator (it runs with the database's credentials) and every change it
makes is in the group's change log as ``operator:cli``.
"""

from __future__ import annotations

import argparse
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from renkei.auth.principal import Principal
from renkei.cli import CliError
from renkei.config import Settings

OPERATOR = Principal(subject="cli", kind="operator")


def _services(settings: Settings) -> Any:
    from renkei.app import build_services
    from renkei.store.migrate import upgrade

    upgrade(str(settings.database_url))
    return build_services(settings)


def cmd_import(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from renkei.roster import RosterError, service

    path = Path(args.file)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as exc:
        raise CliError(f"cannot read {path}: {exc}") from exc
    services = _services(settings)
    try:
        with services.db.session(write=True) as session:
            view = service.create_group(
                session,
                services.clock,
                OPERATOR,
                raw,
                repository=services.engine.repository(session),
                search=service.fhir_search(services.engine, session),
                group_id=args.id,
            )
            return {
                "ok": True,
                "id": view.id,
                "version": view.version,
                "name": view.config.name,
                "doctors": len(view.config.doctors),
                "clinics": len(view.config.clinics),
            }
    except RosterError as exc:
        raise CliError(str(exc)) from exc
    finally:
        services.db.dispose()


def cmd_who(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from renkei.roster import RosterError, on_duty, present, service

    services = _services(settings)
    try:
        with services.db.session() as session:
            roster = service.load_roster(session, args.group)
            cfg = roster.config
            if args.at:
                try:
                    at = datetime.fromisoformat(args.at)
                except ValueError as exc:
                    raise CliError(f"--at {args.at!r} is not an ISO 8601 date-time") from exc
                at = at if at.tzinfo else at.replace(tzinfo=cfg.tz)
            else:
                at = services.clock.now()
            return {"ok": True, "group": args.group, **present.duty(on_duty(roster, at), cfg)}
    except RosterError as exc:
        raise CliError(str(exc)) from exc
    finally:
        services.db.dispose()


def cmd_list(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from renkei.roster import service

    services = _services(settings)
    try:
        with services.db.session() as session:
            groups = service.list_groups(session, OPERATOR)
            return {
                "ok": True,
                "groups": [
                    {"id": g.id, "name": g.config.name, "version": g.version} for g in groups
                ],
            }
    finally:
        services.db.dispose()


def register(sub: Any) -> None:
    roster = sub.add_parser("roster", help="rotation groups: import, who is on duty")
    cmds = roster.add_subparsers(dest="roster_command", required=True)

    imp = cmds.add_parser("import", help="create a group from a YAML/JSON file")
    imp.add_argument("file")
    imp.add_argument("--id", default=None, help="group id (default: generated)")
    imp.add_argument("--json", action="store_true")
    imp.set_defaults(func=cmd_import)

    who = cmds.add_parser("who", help="who is primary and back-up (now or --at)")
    who.add_argument("--group", required=True)
    who.add_argument("--at", default=None, help="ISO 8601; without offset: the group's zone")
    who.add_argument("--json", action="store_true")
    who.set_defaults(func=cmd_who)

    lst = cmds.add_parser("list", help="list rotation groups")
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(func=cmd_list)
