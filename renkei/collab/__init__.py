"""Day-to-day collaboration: the patient timeline, read receipts, care-team onboarding."""

from renkei.collab.errors import CollabError, ItemNotFound, NotOnTeam

__all__ = ["CollabError", "ItemNotFound", "NotOnTeam"]
