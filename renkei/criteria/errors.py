"""The criteria package's error tree; ``api/errors.py`` maps the base class to HTTP once."""

from __future__ import annotations

from typing import ClassVar

from renkei.fhir.outcome import FhirError


class CriteriaError(Exception):
    """Base of the errors of managing escalation rules; ``status`` is the HTTP status."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "invalid"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRule(CriteriaError):
    """The rule or its scope is malformed; the message names the field."""


class RuleNotFound(CriteriaError):
    """No such rule or patient, or the caller may not know of it (served as 404)."""

    status = 404
    code = "not-found"


class NotPermitted(CriteriaError):
    """The caller may not manage the rules of that organisation or patient."""

    status = 403
    code = "forbidden"


class EscalationFailed(FhirError):
    """A fired rule's action (open an urgent call) could not be carried out.

    Raised from the Observation write listener, so the write fails with this
    OperationOutcome and nothing is stored: the writer learns at once that nobody was
    called, instead of the call being lost silently.
    """

    status = 503  # not the writer's fault, and worth sending again
    code = "transient"


__all__ = ["CriteriaError", "EscalationFailed", "InvalidRule", "NotPermitted", "RuleNotFound"]
