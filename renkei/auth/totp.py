"""TOTP second factor (RFC 6238, 30-second steps, 6 digits) with replay refusal.

A code is accepted for the current step or one step either side (clock drift), and only if
its step is later than the last step accepted for that account: the same code, or any code
of an earlier step, cannot be used twice (RFC 6238 §5.2).
"""

from __future__ import annotations

import hmac
from datetime import datetime

import pyotp

ISSUER = "renkei"
DRIFT_STEPS = 1


def new_secret() -> str:
    return pyotp.random_base32()


def provisioning_uri(secret: str, login: str) -> str:
    """The ``otpauth://`` URI an authenticator app scans (shown once at enrolment)."""
    return pyotp.TOTP(secret).provisioning_uri(name=login, issuer_name=ISSUER)


def code_at(secret: str, when: datetime) -> str:
    """The code an authenticator shows at ``when`` (tests and enrolment checks)."""
    return pyotp.TOTP(secret).at(when)


def matching_step(secret: str, code: str, when: datetime, last_step: int | None) -> int | None:
    """The time step ``code`` belongs to, if valid now and not yet used; else None.

    >>> from datetime import UTC, datetime
    >>> secret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
    >>> now = datetime(2026, 4, 1, tzinfo=UTC)
    >>> step = matching_step(secret, code_at(secret, now), now, None)
    >>> step == int(now.timestamp()) // 30
    True
    >>> matching_step(secret, code_at(secret, now), now, step) is None  # replay
    True
    """
    code = code.strip().replace(" ", "")
    if not (code.isdigit() and len(code) == 6):
        return None
    totp = pyotp.TOTP(secret)
    current = totp.timecode(when)
    found = None
    for offset in range(-DRIFT_STEPS, DRIFT_STEPS + 1):
        if hmac.compare_digest(totp.generate_otp(current + offset), code):
            found = current + offset
    if found is None or (last_step is not None and found <= last_step):
        return None
    return found


__all__ = ["ISSUER", "code_at", "matching_step", "new_secret", "provisioning_uri"]
