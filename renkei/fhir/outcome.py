"""OperationOutcome and the FHIR error tree.

Everything below the HTTP layer raises a :class:`FhirError` subclass; ``api/errors.py``
turns it into an OperationOutcome with the status the subclass carries, in one place.
See https://hl7.org/fhir/R4/operationoutcome.html and https://hl7.org/fhir/R4/http.html.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass(frozen=True)
class Issue:
    """One ``OperationOutcome.issue``; ``expression`` names the element (FHIRPath)."""

    severity: str  # fatal | error | warning | information
    code: str  # http://hl7.org/fhir/R4/valueset-issue-type.html
    diagnostics: str
    expression: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "severity": self.severity,
            "code": self.code,
            "diagnostics": self.diagnostics,
        }
        if self.expression:
            out["expression"] = list(self.expression)
        return out


def operation_outcome(issues: list[Issue] | Issue) -> dict[str, Any]:
    """Build an OperationOutcome resource.

    >>> operation_outcome(Issue("error", "not-found", "Patient/1 is not known"))["issue"][0]["code"]
    'not-found'
    """
    if isinstance(issues, Issue):
        issues = [issues]
    return {"resourceType": "OperationOutcome", "issue": [i.to_json() for i in issues]}


def information(text: str) -> dict[str, Any]:
    return operation_outcome(Issue("information", "informational", text))


@dataclass
class FhirError(Exception):
    """Base of every error a FHIR interaction may end with."""

    diagnostics: str
    expression: tuple[str, ...] = ()
    issues: list[Issue] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)

    status: ClassVar[int] = 500
    code: ClassVar[str] = "exception"

    def __post_init__(self) -> None:
        super().__init__(self.diagnostics)

    code_override: str | None = None

    def outcome(self) -> dict[str, Any]:
        code = self.code_override or self.code
        issues = self.issues or [Issue("error", code, self.diagnostics, self.expression)]
        return operation_outcome(issues)


class BadRequest(FhirError):
    """The request is malformed (400): bad JSON, bad parameter, wrong resourceType."""

    status = 400
    code = "invalid"


class InvalidResource(FhirError):
    """The resource fails validation (422 Unprocessable Entity, http.html#2.21.0.8)."""

    status = 422
    code = "processing"


class NotSupported(FhirError):
    """The interaction, type or parameter is not supported (400/405)."""

    status = 400
    code = "not-supported"


class MethodNotAllowed(FhirError):
    status = 405
    code = "not-supported"


class NotAcceptable(FhirError):
    status = 406
    code = "not-supported"


class UnsupportedMediaType(FhirError):
    status = 415
    code = "not-supported"


class Unauthorized(FhirError):
    status = 401
    code = "login"


class Forbidden(FhirError):
    status = 403
    code = "forbidden"


class NotFound(FhirError):
    status = 404
    code = "not-found"


class Gone(FhirError):
    """The resource was deleted (410, http.html#read)."""

    status = 410
    code = "deleted"


class Conflict(FhirError):
    status = 409
    code = "conflict"


class PreconditionFailed(FhirError):
    """``If-Match`` version mismatch or an ambiguous conditional interaction (412)."""

    status = 412
    code = "conflict"


class TooManyRequests(FhirError):
    status = 429
    code = "throttled"


__all__ = [
    "BadRequest",
    "Conflict",
    "FhirError",
    "Forbidden",
    "Gone",
    "InvalidResource",
    "Issue",
    "MethodNotAllowed",
    "NotAcceptable",
    "NotFound",
    "NotSupported",
    "OutcomeError",
    "PreconditionFailed",
    "TooManyRequests",
    "Unauthorized",
    "UnsupportedMediaType",
    "as_fhir_error",
    "information",
    "operation_outcome",
]


def as_fhir_error(exc: Exception) -> FhirError | None:
    """Translate a storage error into the FHIR error a client should see (None if unknown)."""
    from renkei.store import errors as store

    headers = {"ETag": exc.etag} if isinstance(exc, store.StoreError) and exc.etag else {}
    mapping: list[tuple[type[Exception], type[FhirError]]] = [
        (store.ResourceNotFound, NotFound),
        (store.ResourceGone, Gone),
        (store.VersionMismatch, PreconditionFailed),
        (store.AlreadyExists, Conflict),
        (store.ConcurrentUpdate, Conflict),
        (store.BadCursor, BadRequest),
    ]
    for source, target in mapping:
        if isinstance(exc, source):
            return target(str(exc), headers=headers)
    return None


class OutcomeError(FhirError):
    """An error carrying the status and OperationOutcome of a response already built.

    Used when an internal call (a Bundle entry, a convenience endpoint) fails and the
    caller must fail the same way.
    """

    def __init__(self, status: int, outcome: dict[str, Any] | None, prefix: str = "") -> None:
        issues = [
            Issue(
                i.get("severity", "error"),
                i.get("code", "processing"),
                f"{prefix}{i.get('diagnostics', '')}",
                tuple(i.get("expression", ())),
            )
            for i in (outcome or {}).get("issue", [])
        ]
        super().__init__(f"{prefix}failed with status {status}", issues=issues)
        # per-instance status: shadows the class-level default on purpose
        object.__setattr__(self, "status", status)
