"""``/criteria/rules``: agreed escalation criteria (協力医療機関との事前の取り決め), JSON.

A thin adapter over ``renkei.criteria.service``; errors of the criteria package become an
OperationOutcome in ``renkei.api.errors``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, Query, Request
from pydantic import BaseModel, Field

from renkei.api.deps import get_services, require_principal, run_read, run_write
from renkei.auth.principal import Principal
from renkei.criteria import service

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
async def list_rules(
    request: Request,
    organization: str | None = Query(default=None, description="Organization/<id>"),
    patient: str | None = Query(default=None, description="Patient/<id>"),
    principal: Principal = Depends(require_principal),
) -> dict[str, Any]:
    clock = get_services(request).clock
    rules = await run_read(
        request, principal, service.list_rules, clock, organization=organization, patient=patient
    )
    return {"rules": rules}


@router.post("", status_code=201, summary="Add an agreed escalation rule (validated)")
async def create_rule(
    request: Request,
    body: RuleIn = Body(),
    principal: Principal = Depends(require_principal),
) -> dict[str, Any]:
    return await run_write(
        request,
        principal,
        service.create_rule,
        get_services(request).clock,
        organization=body.organization,
        patient=body.patient,
        rule=body.rule,
    )


@router.get("/{rule_id}", summary="One rule (active or not)")
async def get_rule(
    rule_id: str,
    request: Request,
    principal: Principal = Depends(require_principal),
) -> dict[str, Any]:
    return await run_read(request, principal, service.get_rule, rule_id)


@router.delete("/{rule_id}", summary="Deactivate a rule (kept for the calls it opened)")
async def delete_rule(
    rule_id: str,
    request: Request,
    principal: Principal = Depends(require_principal),
) -> dict[str, Any]:
    clock = get_services(request).clock
    return await run_write(request, principal, service.deactivate_rule, clock, rule_id)


__all__ = ["router"]
