"""The ``renkei`` command. Admin commands take ``--json`` and then print one JSON object."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from renkei.config import Settings, SettingsError

Command = Callable[[argparse.Namespace, Settings], dict[str, Any]]
_COMMANDS: dict[str, Command] = {}


def _emit(args: argparse.Namespace, result: dict[str, Any]) -> None:
    if getattr(args, "json", False):
        print(json.dumps(result, ensure_ascii=False))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from renkei.store.migrate import current_heads, upgrade

    upgrade(str(settings.database_url))
    return {"ok": True, "heads": sorted(current_heads(str(settings.database_url)))}


def cmd_demo(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from renkei.demo import seed_demo
    from renkei.store.migrate import upgrade

    upgrade(str(settings.database_url))
    return seed_demo(settings)


def cmd_serve(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    import uvicorn

    from renkei.app import create_app
    from renkei.store.migrate import upgrade

    upgrade(str(settings.database_url))
    if args.demo:
        from renkei.demo import seed_demo

        seed_demo(settings)
    from renkei.logs import configure_logging

    configure_logging()
    # Websocket messages are small JSON; per-message deflate costs ~100 KiB per connection
    # and most of the send CPU (bench/notify.py), so it is off.
    uvicorn.run(
        create_app(settings),
        host=args.host,
        port=args.port,
        log_config=None,
        timeout_graceful_shutdown=20,
        ws_per_message_deflate=False,
    )
    return {"ok": True}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="renkei", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="migrate, then serve HTTP")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--demo", action="store_true", help="seed the demo network if empty")
    serve.set_defaults(func=cmd_serve)

    migrate = sub.add_parser("migrate", help="bring the database schema up to date")
    migrate.add_argument("--json", action="store_true")
    migrate.set_defaults(func=cmd_migrate)

    demo = sub.add_parser("demo", help="seed the demo network (idempotent)")
    demo.add_argument("--json", action="store_true")
    demo.set_defaults(func=cmd_demo)

    for register in _extensions():
        register(sub)
    return parser


#: Modules that add sub-commands: each has ``register(subparsers)``. Listed here rather
#: than registered on import, so the command set never depends on import order.
EXTENSION_MODULES: tuple[str, ...] = (
    "renkei.ops.cli",
    "renkei.roster.cli",
    "renkei.fhir.search.commands",
    "renkei.auth.cli",
    "renkei.audit.cli",
    "renkei.calls.cli",
    "renkei.notify.cli",
)


def _extensions() -> list[Callable[[Any], None]]:

    return [importlib.import_module(name).register for name in EXTENSION_MODULES]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"renkei: {exc}", file=sys.stderr)
        return 2
    try:
        result = args.func(args, settings)
    except CliError as exc:
        if getattr(args, "json", False):
            payload = exc.payload or {"ok": False, "error": str(exc)}
            print(json.dumps(payload, ensure_ascii=False))
        else:
            print(f"renkei: {exc}", file=sys.stderr)
        return exc.exit_code
    if args.command != "serve":
        _emit(args, result)
    return 0


class CliError(Exception):
    """A user-facing failure: printed as one line (or one JSON object), no traceback."""

    def __init__(
        self, message: str, exit_code: int = 1, payload: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        #: printed as the one JSON object under --json instead of {"ok": false, "error": ...}
        self.payload = payload


if __name__ == "__main__":
    raise SystemExit(main())
