"""The access-policy hook every FHIR interaction goes through.

The auth package supplies the real policy (scopes, care teams, consent, duty access,
break-the-glass); the engine calls these methods and nothing else decides who sees what.
"""

from __future__ import annotations

from typing import Any, Protocol

from sqlalchemy.orm import Session

from renkei.fhir.context import RequestContext
from renkei.store.repository import StoredResource

#: ``ctx.extra`` key: the patient a search is pinned to, while its condition is built
WITHIN_PATIENT = "search.within_patient"


class AccessPolicy(Protocol):
    def authorize(self, ctx: RequestContext, interaction: str, res_type: str | None) -> None:
        """Type-level check (scopes). Raise Unauthorized/Forbidden to refuse.

        ``interaction`` is one of read, vread, search, history, create, update, patch,
        delete, operation, capabilities, batch, transaction.
        """
        ...

    def can_read(self, session: Session, ctx: RequestContext, stored: StoredResource) -> bool:
        """Instance-level read check; a False answer is served as 404, never 403."""
        ...

    def check_write(
        self,
        session: Session,
        ctx: RequestContext,
        res_type: str,
        new: dict[str, Any] | None,
        old: StoredResource | None,
    ) -> None:
        """Raise Forbidden if the caller may not write (``new=None`` is a delete)."""
        ...

    def search_filter(self, session: Session, ctx: RequestContext, res_type: str) -> Any:
        """A SQL condition on ``fhir_resource`` rows the caller may see, or None for all.

        While the search engine builds the condition for a search pinned to one patient
        (``Observation?patient=Patient/1``), ``ctx.extra[WITHIN_PATIENT]`` names that
        patient: every match is in its compartment, so a policy that shows a visible
        patient's whole compartment may answer with one check instead of a per-row one.
        """
        ...


class AllowAll:
    """No restriction: for tools run by the operator and for tests of the FHIR engine."""

    def authorize(self, ctx: RequestContext, interaction: str, res_type: str | None) -> None:
        return None

    def can_read(self, session: Session, ctx: RequestContext, stored: StoredResource) -> bool:
        return True

    def check_write(
        self,
        session: Session,
        ctx: RequestContext,
        res_type: str,
        new: dict[str, Any] | None,
        old: StoredResource | None,
    ) -> None:
        return None

    def search_filter(self, session: Session, ctx: RequestContext, res_type: str) -> Any:
        return None
