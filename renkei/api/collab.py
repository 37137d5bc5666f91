"""``/patients/{id}/timeline``, read receipts and care-team onboarding (JSON)."""

from __future__ import annotations

from datetime import date
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from renkei.api.deps import get_services, require_principal, run_read, run_write
from renkei.auth.principal import Principal
from renkei.collab import onboarding, service

router = APIRouter(tags=["collaboration"])


@router.get(
    "/patients/{patient_id}/timeline",
    summary="The patient's timeline (経過): vitals, notes, photos, calls, summary changes",
    description="Newest first, paged with `cursor` (from `next_cursor`). Each item says "
    "whether the caller has already marked it as read.",
)
async def get_timeline(
    patient_id: str,
    request: Request,
    count: int = Query(20, ge=1, le=100),
    cursor: str | None = None,
    principal: Principal = Depends(require_principal),
) -> dict[str, Any]:
    page = await run_read(
        request, principal, service.timeline, patient_id, count=count, cursor=cursor
    )
    return {"items": page.items, "next_cursor": page.next_cursor}


@router.post(
    "/timeline/{item_type}/{item_id}/seen",
    summary="Mark a timeline item as read (既読, the team's OK button)",
)
async def post_seen(
    item_type: str,
    item_id: str,
    request: Request,
    principal: Principal = Depends(require_principal),
) -> dict[str, Any]:
    clock = get_services(request).clock
    return await run_write(request, principal, service.mark_seen, clock, item_type, item_id)


@router.get(
    "/timeline/{item_type}/{item_id}/receipts",
    summary="Who on the care team has read the item, and who has not",
)
async def get_receipts(
    item_type: str,
    item_id: str,
    request: Request,
    principal: Principal = Depends(require_principal),
) -> dict[str, Any]:
    return await run_read(request, principal, service.receipts, item_type, item_id)


class Invite(BaseModel):
    organization: str = Field(description="Organization id to add to the care team")
    role: str | None = Field(None, description="What they do for the patient, e.g. 訪問看護")


@router.post(
    "/patients/{patient_id}/care-team/invite",
    summary="Add an organisation to the patient's active CareTeam",
)
async def post_invite(
    patient_id: str,
    body: Invite,
    request: Request,
    principal: Principal = Depends(require_principal),
) -> dict[str, Any]:
    return await run_write(
        request,
        principal,
        onboarding.invite_organization,
        patient_id,
        body.organization,
        role=body.role,
    )


class ConsentIn(BaseModel):
    actors: list[str] = Field(
        description="Organization/<id> or CareTeam/<id> the patient agrees to share with"
    )
    start: date
    end: date | None = None
    obtained_by: str | None = Field(None, description="Organization/<id> that obtained it")
    document: str | None = Field(None, description="Binary/<id> or DocumentReference/<id>")


@router.post("/patients/{patient_id}/consent", summary="Record the patient's consent to share")
async def post_consent(
    patient_id: str,
    body: ConsentIn,
    request: Request,
    principal: Principal = Depends(require_principal),
) -> dict[str, Any]:
    return await run_write(
        request,
        principal,
        onboarding.record_consent,
        patient_id,
        actors=body.actors,
        start=body.start,
        end=body.end,
        obtained_by=body.obtained_by,
        document=body.document,
    )


@router.post("/consents/{consent_id}/revoke", summary="Withdraw a consent (becomes inactive)")
async def post_revoke(
    consent_id: str, request: Request, principal: Principal = Depends(require_principal)
) -> dict[str, Any]:
    return await run_write(request, principal, onboarding.revoke_consent, consent_id)
