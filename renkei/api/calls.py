"""``/oncall/calls``: the urgent-call JSON API, a thin adapter over ``renkei.calls``.

Every endpoint needs an authenticated caller (``require_principal``). Errors of the calls
package become an OperationOutcome in ``renkei.api.errors``.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from renkei.api.deps import get_services, read_session, require_principal, write_session
from renkei.auth.principal import Principal
from renkei.calls import service
from renkei.calls.escalation import OUTCOMES

router = APIRouter(prefix="/oncall/calls", tags=["urgent calls"])


class CallIn(BaseModel):
    """An urgent call through the convenience endpoint (the FHIR Task is built from it)."""

    patient: str = Field(description="Patient/<id>", examples=["Patient/123"])
    reason: str = Field(min_length=1, max_length=4000)
    priority: Literal["stat", "asap", "urgent", "routine"] = "asap"
    requester: str | None = Field(
        default=None, description="who asks; defaults to the caller's PractitionerRole"
    )
    callback: str | None = Field(default=None, max_length=100, description="call-back number")
    vitals: list[dict[str, Any] | str] = Field(
        default_factory=list, description="Observation resources (contained) or references"
    )


class StepIn(BaseModel):
    step: int | None = Field(default=None, description="the step you were paged for (optional)")


class RejectIn(StepIn):
    reason: str = Field(min_length=1, max_length=2000)


class HandoverIn(BaseModel):
    to: str = Field(description="PractitionerRole/<id> of the doctor taking over")
    note: str | None = Field(default=None, max_length=2000)


class ResolveIn(BaseModel):
    outcome: str = Field(description=" | ".join(sorted(OUTCOMES)))
    note: str | None = Field(default=None, max_length=4000)


class CancelIn(BaseModel):
    reason: str | None = Field(default=None, max_length=2000)


def _runtime(request: Request) -> service.CallRuntime:
    runtime = get_services(request).calls
    assert runtime is not None, "create_app always builds the calls runtime"
    return runtime


def _fhir_base(request: Request) -> str:
    from renkei.api.fhir import base_url

    return base_url(request)


@router.post("", status_code=201, summary="Raise an urgent call (idempotent with Idempotency-Key)")
async def create_call(
    body: CallIn,
    request: Request,
    response: Response,
    principal: Principal = Depends(require_principal),
    idempotency_key: str | None = Header(default=None, max_length=200),
) -> dict[str, Any]:
    services = get_services(request)
    new = service.NewCall(
        patient=body.patient,
        reason=body.reason,
        priority=body.priority,
        requester=body.requester,
        callback=body.callback,
        vitals=body.vitals,
    )
    view, created = await run_in_threadpool(
        service.create_call,
        _runtime(request),
        services.db.session,
        services.clock,
        principal,
        new,
        idempotency_key,
        _fhir_base(request),
    )
    if not created:
        response.status_code = 200
    return view


@router.get("", summary="Calls the caller may see (state=open|<state>, mine=true)")
def list_calls(
    state: str | None = Query(default=None),
    mine: bool = Query(default=False),
    session: Session = Depends(read_session),
    principal: Principal = Depends(require_principal),
) -> dict[str, Any]:
    return {"calls": service.list_calls(session, principal, state=state, mine=mine)}


@router.get("/self-check", summary="Open calls whose next step is overdue")
def self_check(
    request: Request,
    session: Session = Depends(write_session),
    principal: Principal = Depends(require_principal),
) -> dict[str, Any]:
    from renkei.calls.errors import NotPermitted

    if principal.kind != "operator" and principal.role not in ("coordinator", "admin"):
        raise NotPermitted("the self-check is for coordinators and operators")
    services = get_services(request)
    return service.self_check(_runtime(request), session, services.clock)


@router.get("/{call_id}", summary="A call with its whole timeline")
def get_call(
    call_id: str,
    request: Request,
    session: Session = Depends(read_session),
    principal: Principal = Depends(require_principal),
) -> dict[str, Any]:
    return service.get_call(session, call_id, principal, _fhir_base(request))


@router.get("/{call_id}/timeline", summary="Every event of a call, in order")
def get_timeline(
    call_id: str,
    request: Request,
    session: Session = Depends(read_session),
    principal: Principal = Depends(require_principal),
) -> dict[str, Any]:
    view = service.get_call(session, call_id, principal, _fhir_base(request))
    return {"id": call_id, "timeline": view["timeline"]}


def _act(
    request: Request, session: Session, principal: Principal, call_id: str, action: str, args: Any
) -> dict[str, Any]:
    services = get_services(request)
    return service.act(
        _runtime(request),
        session,
        services.clock,
        call_id,
        principal,
        action,
        args,
        _fhir_base(request),
    )


@router.post("/{call_id}/acknowledge", summary="I have seen it (stops escalation)")
def acknowledge(
    call_id: str,
    request: Request,
    body: StepIn | None = None,
    session: Session = Depends(write_session),
    principal: Principal = Depends(require_principal),
) -> dict[str, Any]:
    args = (body or StepIn()).model_dump()
    return _act(request, session, principal, call_id, "acknowledge", args)


@router.post("/{call_id}/accept", summary="I take responsibility for the call")
def accept(
    call_id: str,
    request: Request,
    body: StepIn | None = None,
    session: Session = Depends(write_session),
    principal: Principal = Depends(require_principal),
) -> dict[str, Any]:
    args = (body or StepIn()).model_dump()
    return _act(request, session, principal, call_id, "accept", args)


@router.post("/{call_id}/reject", summary="I cannot take it (escalates at once)")
def reject(
    call_id: str,
    body: RejectIn,
    request: Request,
    session: Session = Depends(write_session),
    principal: Principal = Depends(require_principal),
) -> dict[str, Any]:
    return _act(request, session, principal, call_id, "reject", body.model_dump())


@router.post("/{call_id}/handover", summary="Hand the call to another doctor")
def handover(
    call_id: str,
    body: HandoverIn,
    request: Request,
    session: Session = Depends(write_session),
    principal: Principal = Depends(require_principal),
) -> dict[str, Any]:
    return _act(request, session, principal, call_id, "handover", body.model_dump())


@router.post("/{call_id}/resolve", summary="Close the call with its outcome")
def resolve(
    call_id: str,
    body: ResolveIn,
    request: Request,
    session: Session = Depends(write_session),
    principal: Principal = Depends(require_principal),
) -> dict[str, Any]:
    return _act(request, session, principal, call_id, "resolve", body.model_dump())


@router.post("/{call_id}/cancel", summary="Withdraw the call (requester)")
def cancel(
    call_id: str,
    request: Request,
    body: CancelIn | None = None,
    session: Session = Depends(write_session),
    principal: Principal = Depends(require_principal),
) -> dict[str, Any]:
    args = (body or CancelIn()).model_dump()
    return _act(request, session, principal, call_id, "cancel", args)


__all__ = ["router"]
