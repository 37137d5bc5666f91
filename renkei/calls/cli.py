"""``renkei calls ...``: the operator's view of urgent calls (self-check, one call's timeline)."""

from __future__ import annotations

import argparse
from typing import Any

from renkei.cli import CliError
from renkei.config import Settings


def _services(settings: Settings) -> Any:
    from dataclasses import replace

    from renkei.app import build_services
    from renkei.calls import CallSettings

    return build_services(settings, call_settings=replace(CallSettings.from_env(), worker=False))


def cmd_self_check(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """Open calls whose next step is overdue; exit code 0 either way, ``count`` tells."""
    from renkei.calls import service

    services = _services(settings)
    try:
        with services.db.session(write=True) as session:
            report = service.self_check(services.calls, session, services.clock)
    finally:
        services.db.dispose()
    return {"ok": report["count"] == 0, **report}


def cmd_show(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from renkei.auth.principal import Principal
    from renkei.calls import CallNotFound, service

    services = _services(settings)
    try:
        with services.db.session() as session:
            view = service.get_call(session, args.id, Principal(subject="cli", kind="operator"))
    except CallNotFound as exc:
        raise CliError(str(exc)) from exc
    finally:
        services.db.dispose()
    return {"ok": True, **view}


def register(sub: Any) -> None:
    calls = sub.add_parser("calls", help="urgent calls: self-check, one call's timeline")
    cmds = calls.add_subparsers(dest="calls_command", required=True)
    check = cmds.add_parser("self-check", help="report open calls whose next step is overdue")
    check.add_argument("--json", action="store_true")
    check.set_defaults(func=cmd_self_check)
    show = cmds.add_parser("show", help="a call with its whole timeline")
    show.add_argument("id")
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=cmd_show)
