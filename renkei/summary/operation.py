"""``Patient/[id]/$summary``: gather each section as the caller and build the document.

Every section is a search run with the caller's context, so the access policy decides
which entries appear; a section the caller's role may not see is listed as withheld.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session

from renkei.fhir.context import FhirRequest, FhirResponse, RequestContext
from renkei.fhir.engine import FhirEngine, OperationDef
from renkei.fhir.outcome import BadRequest
from renkei.fhir.timeparse import DEFAULT_ZONE as JST
from renkei.summary.document import SectionContent, build_summary
from renkei.summary.sections import SECTIONS

#: (session, patient resource) -> lines for the care-team section (the rotation group's
#: after-hours contact); set by the roster package when it is wired in.
AfterHoursContact = Callable[[Session, dict[str, Any]], list[str]]
_after_hours: list[AfterHoursContact] = []


def set_after_hours_contact(fn: AfterHoursContact) -> None:
    _after_hours[:] = [fn]


def _role(ctx: RequestContext) -> str | None:
    return getattr(ctx.principal, "role", None)


def gather(
    engine: FhirEngine, session: Session, ctx: RequestContext, patient: dict[str, Any]
) -> list[SectionContent]:
    sections = []
    role = _role(ctx)
    for spec in SECTIONS:
        content = SectionContent(spec)
        if spec.roles is not None and role is not None and role not in spec.roles:
            content.withheld = True
            sections.append(content)
            continue
        seen: set[str] = set()
        for res_type, params in spec.searches:
            query = [(k, v.replace("{patient}", patient["id"])) for k, v in params]
            # The document shows no totals: without this, "the 10 latest vital signs" of
            # a patient with 1,600 of them is a second query that counts all 1,600.
            query.append(("_total", "none"))
            bundle = _search_recent(engine, session, ctx, res_type, query, spec.recent_days)
            for entry in bundle.get("entry", []):
                resource = entry.get("resource")
                if not resource:
                    continue
                key = f"{resource['resourceType']}/{resource['id']}"
                if key not in seen:
                    seen.add(key)
                    content.resources.append(resource)
        if spec.key == "care-team":
            for fn in _after_hours:
                content.notes.extend(fn(session, patient))
        sections.append(content)
    return sections


def _search_recent(
    engine: FhirEngine,
    session: Session,
    ctx: RequestContext,
    res_type: str,
    query: list[tuple[str, str]],
    days: int | None,
) -> dict[str, Any]:
    """The section's search, first within the last ``days`` (in Japan time), then, only if
    nothing is that recent, over all time: same entries for a patient seen monthly, a
    fraction of the rows to sort for one measured daily for years."""
    if days is not None:
        since = (engine.clock.now().astimezone(JST) - timedelta(days=days)).date()
        recent = engine.search.search(
            session, ctx, res_type, [*query, ("date", f"ge{since.isoformat()}")]
        )
        if any(e.get("search", {}).get("mode") == "match" for e in recent.get("entry", [])):
            return recent
    return engine.search.search(session, ctx, res_type, query)


def _summary(
    engine: FhirEngine, session: Session, req: FhirRequest, res_type: str | None, res_id: str | None
) -> FhirResponse:
    if res_type != "Patient" or res_id is None:
        raise BadRequest("$summary is called on one patient: Patient/[id]/$summary")
    engine.policy.authorize(req.context, "read", "Patient")
    stored = engine.repository(session).read("Patient", res_id)
    engine._visible(session, req, stored)
    assert stored.content is not None
    sections = gather(engine, session, req.context, stored.content)
    author = getattr(req.context.principal, "practitioner_role_id", None)
    bundle = build_summary(
        req.context.base_url,
        stored.content,
        sections,
        now=engine.clock.now(),
        author=f"PractitionerRole/{author}" if author else None,
    )
    return FhirResponse(200, bundle)


def register(engine: FhirEngine) -> None:
    engine.register_operation(
        OperationDef(
            name="summary",
            handler=_summary,
            levels=frozenset({"instance"}),
            types=frozenset({"Patient"}),
            definition="http://hl7.org/fhir/uv/ips/OperationDefinition/summary",
            documentation="International Patient Summary-style document of one patient.",
        )
    )
