"""The search hook the FHIR engine calls.

``renkei.fhir.search.engine.SqlSearchEngine`` implements it over the index tables that
``renkei.fhir.search.indexer.SearchIndexWriter`` keeps in step with every write.
"""

from __future__ import annotations

from typing import Any, Protocol

from sqlalchemy.orm import Session

from renkei.fhir.context import RequestContext
from renkei.store.repository import StoredResource


class SearchEngine(Protocol):
    def search(
        self,
        session: Session,
        ctx: RequestContext,
        res_type: str | None,
        params: list[tuple[str, str]],
        *,
        compartment: tuple[str, str] | None = None,
    ) -> dict[str, Any]:
        """Run a search and return a ``searchset`` Bundle (https://hl7.org/fhir/R4/search.html)."""
        ...

    def match(
        self, session: Session, ctx: RequestContext, res_type: str, params: list[tuple[str, str]]
    ) -> list[StoredResource]:
        """Every current resource matching ``params`` (for conditional interactions)."""
        ...


__all__ = ["SearchEngine"]
