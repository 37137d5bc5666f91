"""Errors of day-to-day collaboration (timeline, read receipts, onboarding)."""

from __future__ import annotations


class CollabError(Exception):
    """Base error; ``status`` is the HTTP status the API answers with."""

    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ItemNotFound(CollabError):
    """The timeline item or patient does not exist, or the caller may not see it."""

    status = 404


class NotOnTeam(CollabError):
    """Only a member of the care team (a practitioner role) can mark items as read."""

    status = 403
