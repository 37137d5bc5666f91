"""``renkei org|user|client|token|keys ...``: admin commands (each prints one JSON object).

Each command migrates first (so it works on a fresh data folder), runs one unit of work and
reports auth or FHIR errors as one line, never a traceback.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from renkei.config import Settings


@contextmanager
def _services(settings: Settings) -> Iterator[Any]:
    from renkei.app import build_services
    from renkei.auth.errors import AuthError
    from renkei.cli import CliError
    from renkei.fhir.outcome import FhirError
    from renkei.store.migrate import upgrade

    upgrade(str(settings.database_url))
    services = build_services(settings)
    try:
        yield services
    except AuthError as exc:
        raise CliError(exc.description) from exc
    except FhirError as exc:
        raise CliError(exc.diagnostics) from exc
    finally:
        services.db.dispose()


def cmd_org_create(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from renkei.auth import service

    with _services(settings) as svc, svc.db.session(write=True) as session:
        org_id = service.create_organization(
            session, svc.auth, svc.engine, name=args.name, kind=args.kind
        )
    return {"id": org_id}


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        line = sys.stdin.readline()
        return line[:-1] if line.endswith("\n") else line
    return getpass.getpass("password: ")


def cmd_user_create(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from renkei.auth import service

    password = _read_password(args)
    with _services(settings) as svc, svc.db.session(write=True) as session:
        created = service.create_user(
            session,
            svc.auth,
            svc.engine,
            org_id=args.org,
            name=args.name,
            login=args.login,
            role=args.role,
            password=password,
        )
    return created.to_json()


def cmd_user_disable(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from renkei.auth import service

    with _services(settings) as svc, svc.db.session(write=True) as session:
        revoked = service.disable_user(session, svc.auth, args.user)
    return {"ok": True, "id": args.user, "refresh_tokens_revoked": revoked}


def cmd_client_create(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from renkei.auth import service
    from renkei.cli import CliError

    jwks = None
    if args.jwks_file:
        try:
            jwks = json.loads(Path(args.jwks_file).read_text())
        except (OSError, ValueError) as exc:
            raise CliError(f"cannot read a JWK Set from {args.jwks_file}: {exc}") from exc
    with _services(settings) as svc, svc.db.session(write=True) as session:
        created = service.create_client(
            session,
            svc.auth,
            svc.engine,
            org_id=args.org,
            name=args.name,
            scope=args.scope,
            jwks=jwks,
            redirect_uris=args.redirect_uri,
            public=args.public,
        )
    return created.to_json()


def cmd_token_issue(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from renkei.auth import service

    with _services(settings) as svc, svc.db.session(write=True) as session:
        issued = service.issue_operator_token(
            session,
            svc.auth,
            user_id=args.user,
            scope=args.scope,
            minutes=args.minutes,
            patient_id=args.patient,
        )
    out: dict[str, Any] = {
        "access_token": issued.token,
        "token_type": "Bearer",
        "expires_in": issued.expires_in,
    }
    if args.patient:
        out["patient"] = args.patient
    return out


def cmd_keys_rotate(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from renkei.auth import service

    data = not args.signing_only
    signing = not args.data_only
    with _services(settings) as svc, svc.db.session(write=True) as session:
        rotation = service.rotate_keys(
            session, svc.auth, data=data, signing=signing, rewrap=not args.no_rewrap
        )
    return rotation.to_json()


def cmd_keys_rewrap(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from renkei.auth import service

    with _services(settings) as svc, svc.db.session(write=True) as session:
        count = service.rewrap_all(session, svc.auth)
        kid = svc.auth.keyring.active_kid
    return {"ok": True, "data_kid": kid, "rewrapped": count}


def _command(
    group: Any, name: str, help_text: str, func: Callable[..., dict[str, Any]]
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = group.add_parser(name, help=help_text)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=func)
    return parser


def register(sub: Any) -> None:
    from renkei.auth.service import ORGANIZATION_KINDS, ROLES

    org = sub.add_parser("org", help="organisations").add_subparsers(dest="action", required=True)
    p = _command(org, "create", "create an Organization", cmd_org_create)
    p.add_argument("--name", required=True)
    p.add_argument("--kind", required=True, choices=sorted(ORGANIZATION_KINDS))

    user = sub.add_parser("user", help="user accounts").add_subparsers(dest="action", required=True)
    p = _command(
        user, "create", "create a user, its Practitioner and PractitionerRole", cmd_user_create
    )
    p.add_argument("--org", required=True, help="Organization id")
    p.add_argument("--name", required=True, help='display name, family first: "山田 太郎"')
    p.add_argument("--login", required=True)
    p.add_argument("--role", required=True, choices=ROLES)
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    p = _command(user, "disable", "disable an account; its tokens stop working", cmd_user_disable)
    p.add_argument("--user", required=True, help="user id")

    client = sub.add_parser("client", help="OAuth clients").add_subparsers(
        dest="action", required=True
    )
    p = _command(client, "create", "register an OAuth client", cmd_client_create)
    p.add_argument("--org", required=True, help="Organization id")
    p.add_argument("--name", required=True)
    p.add_argument(
        "--scope", required=True, help='e.g. "system/Patient.rs system/Observation.cruds"'
    )
    p.add_argument("--jwks-file", help="public JWK Set for private_key_jwt (no secret issued)")
    p.add_argument(
        "--redirect-uri", action="append", default=[], help="for apps that sign people in"
    )
    p.add_argument("--public", action="store_true", help="an app without a secret (PKCE only)")

    tok = sub.add_parser("token", help="access tokens").add_subparsers(dest="action", required=True)
    p = _command(
        tok, "issue", "issue an access token for a user (operator tool, audited)", cmd_token_issue
    )
    p.add_argument("--user", required=True, help="user id")
    p.add_argument("--scope", required=True, help='e.g. "user/*.rs" or "patient/*.rs"')
    p.add_argument("--minutes", type=int, default=60)
    p.add_argument(
        "--patient",
        help="Patient id the token is bound to (needed by patient/ scopes; the user must "
        "be able to see the patient)",
    )

    keys = sub.add_parser("keys", help="encryption and signing keys").add_subparsers(
        dest="action", required=True
    )
    p = _command(keys, "rotate", "add new keys and re-wrap stored secrets", cmd_keys_rotate)
    only = p.add_mutually_exclusive_group()
    only.add_argument("--data-only", action="store_true", help="rotate the data key only")
    only.add_argument("--signing-only", action="store_true", help="rotate the signing key only")
    p.add_argument(
        "--no-rewrap",
        action="store_true",
        help="only add keys; run `renkei keys rewrap` once every server has them",
    )
    _command(keys, "rewrap", "re-seal stored secrets under the newest data key", cmd_keys_rewrap)


__all__ = ["register"]
