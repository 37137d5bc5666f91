"""The patient timeline (経過), read receipts (既読) and care-team onboarding.

Everything is read through the FHIR engine as the caller, so the access policy decides
what appears: a timeline never shows an item the caller could not read on its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC
from typing import Any
from urllib.parse import parse_qs, urlsplit

import sqlalchemy as sa
from sqlalchemy.orm import Session

from renkei.clock import Clock
from renkei.collab.errors import ItemNotFound, NotOnTeam
from renkei.collab.models import read_receipt
from renkei.fhir.capability import RENKEI_CODESYSTEM
from renkei.fhir.context import RequestContext
from renkei.fhir.engine import FhirEngine
from renkei.store.errors import StoreError
from renkei.store.repository import StoredResource, instant
from renkei.summary.narrative import _line

TIMELINE_TYPES = (
    "Observation",
    "Communication",
    "DocumentReference",
    "Task",
    "Condition",
    "AllergyIntolerance",
    "MedicationRequest",
    "Consent",
    "CareTeam",
)


@dataclass(frozen=True)
class TimelinePage:
    items: list[dict[str, Any]]
    next_cursor: str | None


def _kind(resource: dict[str, Any]) -> str:
    kind = resource["resourceType"]
    if kind == "Observation":
        cats = [
            c.get("code") for cc in resource.get("category") or [] for c in cc.get("coding") or []
        ]
        return "vital" if "vital-signs" in cats else "observation"
    if kind == "Communication":
        return "note"
    if kind == "DocumentReference":
        return "document"
    if kind == "Task":
        codes = [
            (c.get("system"), c.get("code"))
            for c in (resource.get("code") or {}).get("coding") or []
        ]
        return "call" if (RENKEI_CODESYSTEM, "urgent-call") in codes else "task"
    return "summary-change"


def _author(resource: dict[str, Any]) -> dict[str, Any] | None:
    for key in ("performer", "sender", "requester", "author", "recorder", "asserter"):
        value = resource.get(key)
        if isinstance(value, list):
            value = value[0] if value else None
        if isinstance(value, dict) and (value.get("reference") or value.get("display")):
            return {k: value[k] for k in ("reference", "display") if k in value}
    return None


def _visible_patient(
    engine: FhirEngine, session: Session, ctx: RequestContext, pid: str
) -> StoredResource:
    try:
        stored = engine.repository(session).read("Patient", pid)
    except StoreError as exc:
        raise ItemNotFound(f"Patient/{pid} is not known") from exc
    if not engine.policy.can_read(session, ctx, stored):
        raise ItemNotFound(f"Patient/{pid} is not known")
    return stored


def _reader(ctx: RequestContext) -> tuple[str, str | None]:
    role = getattr(ctx.principal, "practitioner_role_id", None)
    if not role:
        raise NotOnTeam("read receipts are kept per person: sign in as a practitioner role")
    return str(role), getattr(ctx.principal, "organization_id", None)


def timeline(
    engine: FhirEngine,
    session: Session,
    ctx: RequestContext,
    patient_id: str,
    *,
    count: int = 20,
    cursor: str | None = None,
) -> TimelinePage:
    """The patient's items, newest first, with the caller's own read mark on each."""
    _visible_patient(engine, session, ctx, patient_id)
    params = [
        ("_type", ",".join(TIMELINE_TYPES)),
        ("_sort", "-_lastUpdated"),
        ("_count", str(max(1, min(count, 100)))),
        # the page shows no total: counting a year of items on every first page cost more
        # than reading the page itself
        ("_total", "none"),
    ]
    if cursor:
        params.append(("_cursor", cursor))
    bundle = engine.search.search(session, ctx, None, params, compartment=("Patient", patient_id))
    resources = [e["resource"] for e in bundle.get("entry", []) if e.get("resource")]
    role = getattr(ctx.principal, "practitioner_role_id", None)
    seen: set[tuple[str, str]] = set()
    if role and resources:
        rows = session.execute(
            sa.select(read_receipt.c.item_type, read_receipt.c.item_id).where(
                read_receipt.c.patient_id == patient_id,
                read_receipt.c.reader_role == str(role),
            )
        )
        seen = {(t, i) for t, i in rows}
    items = [
        {
            "type": r["resourceType"],
            "id": r["id"],
            "reference": f"{r['resourceType']}/{r['id']}",
            "kind": _kind(r),
            "at": (r.get("meta") or {}).get("lastUpdated"),
            "text": _line(r),
            "author": _author(r),
            "seen": (r["resourceType"], r["id"]) in seen,
        }
        for r in resources
    ]
    next_cursor = None
    for link in bundle.get("link", []):
        if link.get("relation") == "next":
            values = parse_qs(urlsplit(link["url"]).query).get("_cursor")
            next_cursor = values[0] if values else None
    return TimelinePage(items, next_cursor)


def _item_of_patient(
    engine: FhirEngine, session: Session, ctx: RequestContext, item_type: str, item_id: str
) -> tuple[StoredResource, str]:
    """The item if the caller may see it, and the patient it belongs to."""
    if item_type not in TIMELINE_TYPES:
        raise ItemNotFound(f"{item_type} items are not on the timeline")
    try:
        stored = engine.repository(session).read(item_type, item_id)
    except StoreError as exc:
        raise ItemNotFound(f"{item_type}/{item_id} is not known") from exc
    if not engine.policy.can_read(session, ctx, stored):
        raise ItemNotFound(f"{item_type}/{item_id} is not known")
    content = stored.content or {}
    for key in ("subject", "patient", "for"):
        ref = (
            (content.get(key) or {}).get("reference", "")
            if isinstance(content.get(key), dict)
            else ""
        )
        if ref.startswith("Patient/"):
            return stored, ref.split("/", 1)[1]
    raise ItemNotFound(f"{item_type}/{item_id} is not about a patient")


def mark_seen(
    engine: FhirEngine,
    session: Session,
    ctx: RequestContext,
    clock: Clock,
    item_type: str,
    item_id: str,
) -> dict[str, Any]:
    """The "OK" button: idempotent, the first time seen is kept."""
    role, org = _reader(ctx)
    _, patient_id = _item_of_patient(engine, session, ctx, item_type, item_id)
    existing = session.execute(
        sa.select(read_receipt.c.seen_at).where(
            read_receipt.c.item_type == item_type,
            read_receipt.c.item_id == item_id,
            read_receipt.c.reader_role == role,
        )
    ).scalar_one_or_none()
    if existing is None:
        existing = clock.now()
        session.execute(
            read_receipt.insert().values(
                item_type=item_type,
                item_id=item_id,
                reader_role=role,
                reader_org=org,
                patient_id=patient_id,
                seen_at=existing,
            )
        )
    return {
        "reference": f"{item_type}/{item_id}",
        "reader": f"PractitionerRole/{role}",
        "seen_at": instant(existing.astimezone(UTC)),
    }


def team_members(
    engine: FhirEngine, session: Session, ctx: RequestContext, patient_id: str
) -> list[str]:
    """References of the participants of the patient's active care teams."""
    bundle = engine.search.search(
        session, ctx, "CareTeam", [("patient", patient_id), ("status", "active")]
    )
    members: list[str] = []
    for entry in bundle.get("entry", []):
        for part in (entry.get("resource") or {}).get("participant") or []:
            ref = (part.get("member") or {}).get("reference")
            if ref and ref not in members:
                members.append(ref)
    return members


def receipts(
    engine: FhirEngine, session: Session, ctx: RequestContext, item_type: str, item_id: str
) -> dict[str, Any]:
    """Who on the team has read the item, and who has not yet (for the sender)."""
    _, patient_id = _item_of_patient(engine, session, ctx, item_type, item_id)
    rows = session.execute(
        sa.select(read_receipt)
        .where(read_receipt.c.item_type == item_type, read_receipt.c.item_id == item_id)
        .order_by(read_receipt.c.seen_at)
    ).all()
    read = [
        {
            "reader": f"PractitionerRole/{r.reader_role}",
            "organization": r.reader_org and f"Organization/{r.reader_org}",
            "seen_at": instant(r.seen_at),
        }
        for r in rows
    ]
    read_roles = {f"PractitionerRole/{r.reader_role}" for r in rows}
    read_orgs = {f"Organization/{r.reader_org}" for r in rows if r.reader_org}
    unread = [
        m
        for m in team_members(engine, session, ctx, patient_id)
        if m not in read_roles and m not in read_orgs
    ]
    return {"reference": f"{item_type}/{item_id}", "read": read, "unread": unread}
