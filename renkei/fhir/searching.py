"""The search hook the FHIR engine calls, and a basic engine for ``_id`` and ``identifier``.

``renkei.fhir.search`` provides the full engine (every parameter type, chaining, includes,
paging); ``BasicSearch`` is what conditional interactions need at the least.
"""

from __future__ import annotations

from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.orm import Session

from renkei.fhir.context import RequestContext
from renkei.fhir.outcome import BadRequest
from renkei.fhir.policy import AccessPolicy
from renkei.store.indexing import clear_index_rows
from renkei.store.models import idx_token, resource
from renkei.store.repository import StoredResource, _from_current


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


class BasicIndexWriter:
    """Indexes ``identifier`` only, for :class:`BasicSearch`."""

    def reindex(
        self, session: Session, pk: int, res_type: str, content: dict[str, Any] | None
    ) -> None:
        clear_index_rows(session, pk)
        if content is not None:
            self.index_new(session, pk, res_type, content)

    def index_new(self, session: Session, pk: int, res_type: str, content: dict[str, Any]) -> None:
        rows = [
            {
                "resource_pk": pk,
                "res_type": res_type,
                "param": "identifier",
                # a column holds 400 characters; a longer value is indexed by its prefix
                "system": _clip(ident.get("system")),
                "code": _clip(ident.get("value")),
                "text": None,
            }
            for ident in content.get("identifier", []) or []
            if isinstance(ident, dict) and ident.get("value")
        ]
        if rows:
            session.execute(idx_token.insert(), rows)


def _clip(value: Any) -> Any:
    return value[:400] if isinstance(value, str) else value


class BasicSearch:
    """``_id``, ``identifier`` and ``_count`` only."""

    def __init__(self, policy: AccessPolicy) -> None:
        self.policy = policy

    def _select(
        self, session: Session, ctx: RequestContext, res_type: str, params: list[tuple[str, str]]
    ) -> tuple[sa.Select[Any], int]:
        stmt = sa.select(resource).where(
            resource.c.res_type == res_type, resource.c.deleted.is_(False)
        )
        count = 50
        for name, value in params:
            if name == "_id":
                stmt = stmt.where(resource.c.res_id.in_(value.split(",")))
            elif name == "identifier":
                system, _, code = value.rpartition("|") if "|" in value else (None, "", value)
                sub = sa.select(idx_token.c.resource_pk).where(
                    idx_token.c.res_type == res_type,
                    idx_token.c.param == "identifier",
                    idx_token.c.code == code,
                )
                if system:
                    sub = sub.where(idx_token.c.system == system)
                stmt = stmt.where(resource.c.pk.in_(sub))
            elif name == "_count":
                if not (value.isascii() and value.isdigit()):
                    raise BadRequest(f"_count must be a non-negative integer, got {value!r}")
                count = min(int(value[:6]), 1000)
            elif name.startswith("_format") or name == "_total":
                continue
            else:
                raise BadRequest(f"search parameter {name!r} is not supported for {res_type}")
        extra = self.policy.search_filter(session, ctx, res_type)
        if extra is not None:
            stmt = stmt.where(extra)
        return stmt.order_by(resource.c.pk), count

    def match(
        self, session: Session, ctx: RequestContext, res_type: str, params: list[tuple[str, str]]
    ) -> list[StoredResource]:
        stmt, _ = self._select(session, ctx, res_type, params)
        return [_from_current(r) for r in session.execute(stmt.limit(1000))]

    def search(
        self,
        session: Session,
        ctx: RequestContext,
        res_type: str | None,
        params: list[tuple[str, str]],
        *,
        compartment: tuple[str, str] | None = None,
    ) -> dict[str, Any]:
        if res_type is None or compartment is not None:
            raise BadRequest("system-level and compartment search are not supported yet")
        stmt, count = self._select(session, ctx, res_type, params)
        rows = [_from_current(r) for r in session.execute(stmt.limit(count))]
        return {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": len(rows),
            "link": [{"relation": "self", "url": f"{ctx.base_url}/{res_type}"}],
            "entry": [
                {
                    "fullUrl": f"{ctx.base_url}/{r.reference}",
                    "resource": r.content,
                    "search": {"mode": "match"},
                }
                for r in rows
            ],
        }
