"""The auth package's error tree, mapped to HTTP once (``renkei/api/auth.py``).

OAuth errors carry the RFC 6749 §5.2 ``error`` code they are reported with; admin errors
(bad organisation kind, weak password...) are reported by the CLI as one line.
"""

from __future__ import annotations

from typing import ClassVar


class AuthError(Exception):
    """Base of every auth failure."""

    status: ClassVar[int] = 400
    error: ClassVar[str] = "invalid_request"

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


class InvalidRequest(AuthError):
    """A parameter is missing, repeated or malformed (RFC 6749 §5.2)."""


class InvalidClient(AuthError):
    """Client authentication failed: unknown client, wrong secret, bad assertion."""

    status = 401
    error = "invalid_client"


class InvalidGrant(AuthError):
    """The code or refresh token is invalid, expired, revoked or bound to someone else."""

    error = "invalid_grant"


class UnauthorizedClient(AuthError):
    """The client may not use this grant type."""

    error = "unauthorized_client"


class UnsupportedGrantType(AuthError):
    error = "unsupported_grant_type"


class InvalidScope(AuthError):
    """A requested scope is malformed or beyond what the client or user may have."""

    error = "invalid_scope"


class InvalidToken(AuthError):
    """A bearer token is missing its signature, expired, revoked or for another audience."""

    status = 401
    error = "invalid_token"


class LoginFailed(AuthError):
    """Wrong login, password or TOTP code; the message never says which."""

    status = 401
    error = "access_denied"


class AccountLocked(LoginFailed):
    """Too many consecutive failures; sign-in is refused until ``locked_until``."""

    status = 429


class WeakPassword(AuthError):
    """The password breaks the rules (>= 8 characters mixing letters and digits/symbols)."""


class NotFound(AuthError):
    """An organisation, user or client named by an admin command does not exist."""

    status = 404
    error = "not_found"


class Conflict(AuthError):
    """The login or name is already taken."""

    status = 409
    error = "conflict"


class KeyringError(AuthError):
    """A key file is missing, unreadable or too widely readable; or a ciphertext is bad."""

    status = 500
    error = "server_error"


__all__ = [
    "AccountLocked",
    "AuthError",
    "Conflict",
    "InvalidClient",
    "InvalidGrant",
    "InvalidRequest",
    "InvalidScope",
    "InvalidToken",
    "KeyringError",
    "LoginFailed",
    "NotFound",
    "UnauthorizedClient",
    "UnsupportedGrantType",
    "WeakPassword",
]
