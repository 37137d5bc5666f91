"""``/criteria/rules``: agreed escalation criteria (協力医療機関との事前の取り決め), JSON.

A thin adapter over ``renkei.criteria.service``; errors of the criteria package become an
OperationOutcome with the status their class names, here and only here.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Body, Depends, FastAPI, Query, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from renkei.api.deps import (
    get_services,
    read_session,
    request_context,
    require_principal,
    write_session,
)
from renkei.auth.principal import Principal
from renkei.criteria import service
from renkei.criteria.errors import CriteriaError
from renkei.fhir.outcome import Issue, operation_outcome

router = APIRouter(prefix="/criteria/rules", tags=["escalation criteria"])

_SPO2: dict[str, Any] = {
    "name": "SpO2 90%未満",
    "all_of": [{"vital": "spo2", "op": "lt", "value": 90}],
    "action": "open-call",
    "priority": "stat",
}
_FEVER: dict[str, Any] = {
    "name": "38.5℃以上かつ意識レベル変化",
    "all_of": [
        {"vital": "temperature", "op": "ge", "value": 38.5},
        {"vital": "consciousness", "op": "ge", "value": 1},
    ],
    "window_minutes": 60,
}


class RuleIn(BaseModel):
    """A rule for a facility (every patient on whose care team it is) or for one patient."""

    organization: str | None = Field(
        default=None,
        description="Organization/<id>: a facility's rule",
        examples=["Organization/f1"],
    )
    patient: str | None = Field(
        default=None, description="Patient/<id>: a rule for this patient only"
    )
    rule: Any = Field(
        description="name; all_of [{vital, op, value}] and/or news2_at_least; action "
        "(open-call | notify-primary, default open-call); priority (stat | asap | urgent | "
        "routine, default stat); window_minutes (1-1440, default 60). Vitals: temperature, "
        "spo2, respiratory_rate, pulse, systolic, diastolic, consciousness (JCS/ACVPU: 1 = "
        "not alert), oxygen. Ops: lt, le, gt, ge, eq. The id is assigned by the server.",
        examples=[_SPO2],
    )

    model_config = {
        "json_schema_extra": {
            "examples": [
                {"organization": "Organization/f1", "rule": _SPO2},
                {"patient": "Patient/p1", "rule": _FEVER},
                {
                    "patient": "Patient/p1",
                    "rule": {
                        "name": "NEWS2 5点以上",
                        "news2_at_least": 5,
                        "action": "notify-primary",
                    },
                },
            ]
        }
    }


@router.get("", summary="Active rules of a facility, or every rule that applies to a patient")
def list_rules(
    request: Request,
    organization: str | None = Query(default=None, description="Organization/<id>"),
    patient: str | None = Query(default=None, description="Patient/<id>"),
    session: Session = Depends(read_session),
    principal: Principal = Depends(require_principal),
) -> dict[str, Any]:
    services = get_services(request)
    rules = service.list_rules(
        services.engine,
        session,
        request_context(request, principal),
        services.clock,
        organization=organization,
        patient=patient,
    )
    return {"rules": rules}


@router.post("", status_code=201, summary="Add an agreed escalation rule (validated)")
def create_rule(
    request: Request,
    body: RuleIn = Body(),
    session: Session = Depends(write_session),
    principal: Principal = Depends(require_principal),
) -> dict[str, Any]:
    services = get_services(request)
    return service.create_rule(
        services.engine,
        session,
        request_context(request, principal),
        services.clock,
        organization=body.organization,
        patient=body.patient,
        rule=body.rule,
    )


@router.get("/{rule_id}", summary="One rule (active or not)")
def get_rule(
    rule_id: str,
    request: Request,
    session: Session = Depends(read_session),
    principal: Principal = Depends(require_principal),
) -> dict[str, Any]:
    services = get_services(request)
    return service.get_rule(services.engine, session, request_context(request, principal), rule_id)


@router.delete("/{rule_id}", summary="Deactivate a rule (kept for the calls it opened)")
def delete_rule(
    rule_id: str,
    request: Request,
    session: Session = Depends(write_session),
    principal: Principal = Depends(require_principal),
) -> dict[str, Any]:
    services = get_services(request)
    return service.deactivate_rule(
        services.engine, session, request_context(request, principal), services.clock, rule_id
    )


def install_error_handler(app: FastAPI) -> None:
    """Map :class:`CriteriaError` (and subclasses, by MRO) to an OperationOutcome once."""

    async def handle(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, CriteriaError)
        return Response(
            orjson.dumps(operation_outcome(Issue("error", exc.code, exc.message))),
            status_code=exc.status,
            media_type="application/fhir+json",
        )

    app.add_exception_handler(CriteriaError, handle)


__all__ = ["install_error_handler", "router"]
