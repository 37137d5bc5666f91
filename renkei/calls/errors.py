"""The calls package's error tree; ``api/errors.py`` maps the base class to HTTP once."""

from __future__ import annotations

from typing import ClassVar


class CallError(Exception):
    """Base of every urgent-call error; ``status`` is the HTTP status it maps to."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "exception"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class CallNotFound(CallError):
    """No call with that id (or the caller may not know of it)."""

    status = 404
    code = "not-found"


class InvalidCall(CallError):
    """The intake or the action's input is malformed or refers to unknown things."""

    status = 400
    code = "invalid"


class NotPermitted(CallError):
    """The caller is not the one who may do this (not the owner, not the requester)."""

    status = 403
    code = "forbidden"


class InvalidTransition(CallError):
    """The call's state does not allow this action (e.g. acknowledging a resolved call)."""

    status = 409
    code = "conflict"

    def __init__(self, message: str, state: str | None = None) -> None:
        super().__init__(message)
        self.state = state


class DuplicateCall(CallError):
    """Another call already holds this idempotency key (a concurrent duplicate)."""

    status = 409
    code = "duplicate"


__all__ = [
    "CallError",
    "CallNotFound",
    "DuplicateCall",
    "InvalidCall",
    "InvalidTransition",
    "NotPermitted",
]
