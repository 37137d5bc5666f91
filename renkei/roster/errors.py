"""The roster package's errors: one base class, subclasses that carry what went wrong.

Nothing here knows HTTP; ``renkei.api.errors`` maps each class to a status once.
"""

from __future__ import annotations


class RosterError(Exception):
    """Base of every roster error."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidConfig(RosterError):
    """A group definition (YAML/JSON) is malformed; ``path`` points at the offending field."""

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path


class UnknownReference(InvalidConfig):
    """A clinic or doctor named by a group does not exist in the FHIR store."""


class GroupNotFound(RosterError):
    """No such group, or the caller may not know that it exists (same answer on purpose)."""


class NotAllowed(RosterError):
    """The caller may read the group but not change it (or create groups at all)."""


class InvalidChange(RosterError):
    """An override, swap or plan change is not acceptable (bad interval, not a member ...)."""


class PastChange(InvalidChange):
    """A change would rewrite the past; the roster is append-only in time."""


class OverrideNotFound(RosterError):
    """No such override in this group."""


class TokenNotFound(RosterError):
    """An iCal token is unknown or revoked."""


class OutOfRange(RosterError):
    """A query asks about a time too far from the roster to compute (or an empty range)."""


__all__ = [
    "GroupNotFound",
    "InvalidChange",
    "InvalidConfig",
    "NotAllowed",
    "OutOfRange",
    "OverrideNotFound",
    "PastChange",
    "RosterError",
    "TokenNotFound",
    "UnknownReference",
]
