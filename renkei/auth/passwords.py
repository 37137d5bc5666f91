"""Password rules and argon2id hashing.

The rule follows the MHLW guideline 6.0 Q&A: where a second factor is used, a password of at
least 8 characters that mixes kinds of characters is enough (no forced periodic change).
Hashes are argon2id (RFC 9106) via argon2-cffi; the cost comes from settings so tests run fast.
"""

from __future__ import annotations

from argon2 import PasswordHasher as _Argon2
from argon2.exceptions import InvalidHashError, VerificationError

from renkei.auth.errors import WeakPassword
from renkei.config import AuthSettings

MIN_LENGTH = 8
MAX_LENGTH = 256


def check_password_rules(password: str, *, login: str | None = None) -> None:
    """Raise WeakPassword unless ``password`` mixes letters with digits or symbols.

    >>> check_password_rules("kanja2024")
    >>> check_password_rules("password")
    Traceback (most recent call last):
    ...
    renkei.auth.errors.WeakPassword: a password mixes letters with digits or symbols
    >>> check_password_rules("ab1")
    Traceback (most recent call last):
    ...
    renkei.auth.errors.WeakPassword: a password has at least 8 characters
    """
    if len(password) < MIN_LENGTH:
        raise WeakPassword(f"a password has at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise WeakPassword(f"a password has at most {MAX_LENGTH} characters")
    has_letter = any(ch.isalpha() for ch in password)
    has_other = any(not ch.isalpha() and not ch.isspace() for ch in password)
    if not (has_letter and has_other):
        raise WeakPassword("a password mixes letters with digits or symbols")
    if login and password.casefold() == login.casefold():
        raise WeakPassword("a password may not equal the login")


class PasswordHasher:
    """argon2id with the configured cost; verifies in constant time for unknown logins too."""

    def __init__(self, settings: AuthSettings) -> None:
        self._hasher = _Argon2(
            time_cost=settings.argon2_time_cost,
            memory_cost=settings.argon2_memory_kib,
            parallelism=settings.argon2_parallelism,
        )
        # a hash to verify against when the login is unknown, so timing does not tell
        self._dummy = self._hasher.hash("renkei-no-such-user-1")

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, stored_hash: str | None, password: str) -> bool:
        try:
            return self._hasher.verify(stored_hash or self._dummy, password) and bool(stored_hash)
        except (VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored_hash: str) -> bool:
        return self._hasher.check_needs_rehash(stored_hash)


__all__ = ["MAX_LENGTH", "MIN_LENGTH", "PasswordHasher", "check_password_rules"]
