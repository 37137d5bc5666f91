"""Errors of the audit package; the API maps :class:`AuditError` to a 500 (fail closed)."""

from __future__ import annotations


class AuditError(Exception):
    """Base class: the audit log could not be written or read as required."""


class SealKeyError(AuditError):
    """The seal key file is missing, unreadable, malformed or readable by others."""


class ChainBroken(AuditError):
    """The chain head is missing while records exist: appending would fork the chain.

    Patient data is not served while this holds (fail closed); run ``renkei audit verify``.
    """


__all__ = ["AuditError", "ChainBroken", "SealKeyError"]
