"""What the auth package tells the audit log: sign-ins, lockouts, tokens, admin actions.

The seam for the audit trail: :class:`AuthServer` calls every listener in
``AuthServer.listeners`` with an :class:`AuthEvent`, inside the same database transaction
as the change it reports (so an event is recorded exactly when the change is). A login
failure is reported in the transaction that counts it, which commits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

#: action names, stable for the audit log and reports
LOGIN_SUCCEEDED = "login.succeeded"
LOGIN_FAILED = "login.failed"
ACCOUNT_LOCKED = "login.locked"
TOKEN_ISSUED = "token.issued"
#: ``renkei token issue``: a token minted by an operator outside any OAuth flow
TOKEN_ISSUED_BY_OPERATOR = "token.issued.operator"
TOKEN_REFRESHED = "token.refreshed"
TOKEN_REVOKED = "token.revoked"
#: a rotated refresh token came back: its whole family was revoked
REFRESH_TOKEN_REUSED = "token.refresh-reused"
CLIENT_AUTH_FAILED = "client.auth-failed"
ORGANIZATION_CREATED = "admin.organization-created"
USER_CREATED = "admin.user-created"
USER_DISABLED = "admin.user-disabled"
CLIENT_CREATED = "admin.client-created"
KEYS_ROTATED = "admin.keys-rotated"


@dataclass(frozen=True)
class AuthEvent:
    action: str
    at: datetime
    #: "success" or "failure"
    outcome: str = "success"
    #: user id or client id the event is about (None: unknown login)
    subject: str | None = None
    #: "user", "client" or "operator"
    subject_kind: str | None = None
    organization_id: str | None = None
    client_id: str | None = None
    remote_addr: str | None = None
    #: never secrets: login names, scopes, jti, reasons
    detail: dict[str, Any] = field(default_factory=dict)


AuthEventListener = Callable[[Session, AuthEvent], None]

__all__ = [
    "ACCOUNT_LOCKED",
    "CLIENT_AUTH_FAILED",
    "CLIENT_CREATED",
    "KEYS_ROTATED",
    "LOGIN_FAILED",
    "LOGIN_SUCCEEDED",
    "ORGANIZATION_CREATED",
    "REFRESH_TOKEN_REUSED",
    "TOKEN_ISSUED",
    "TOKEN_ISSUED_BY_OPERATOR",
    "TOKEN_REFRESHED",
    "TOKEN_REVOKED",
    "USER_CREATED",
    "USER_DISABLED",
    "AuthEvent",
    "AuthEventListener",
]
