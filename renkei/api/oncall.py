"""``/oncall/...``: the duty roster as JSON (and iCal), a thin adapter over renkei.roster.

Every route but the iCal feed needs a bearer token; a group the caller may not read is
answered 404 exactly like a group that does not exist. Errors are OperationOutcomes (JSON).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any, Literal

import orjson
import yaml
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from renkei.api.deps import get_clock, get_services, read_session, require_principal
from renkei.app import Services
from renkei.auth.principal import Principal
from renkei.clock import Clock
from renkei.roster import errors, present, service
from renkei.roster.config import GroupConfig, config_to_dict
from renkei.roster.ical import doctor_calendar, feed_range, group_calendar
from renkei.roster.snapshot import coverage_gaps, doctor_schedule, fairness, on_duty, schedule

router = APIRouter(prefix="/oncall", tags=["oncall"])

EXAMPLE_GROUP: dict[str, Any] = {
    "name": "城南在宅輪番グループ",
    "timezone": "Asia/Tokyo",
    "coordinator": "PractitionerRole/coord-1",
    "clinics": [
        {
            "id": "Organization/clinic-a",
            "name": "さくら在宅クリニック",
            "office_hours": {
                "weekday": ["09:00-12:30", "14:00-18:00"],
                "saturday": ["09:00-13:00"],
            },
        }
    ],
    "doctors": [
        {"id": "PractitionerRole/dr-a", "name": "佐藤 一郎"},
        {"id": "PractitionerRole/dr-b", "name": "鈴木 花子"},
    ],
    "windows": [
        {"name": "平日夜間", "days": ["mon", "tue", "wed", "thu", "fri"], "start": "18:00",
         "end": "09:00"},
        {"name": "週末", "days": ["sat"], "start": "13:00", "end": "09:00", "end_days_later": 2},
    ],
    "holidays": {"national": True, "start": "09:00", "end": "09:00"},
    "closures": [{"name": "年末年始", "from": "12-29", "to": "01-03"}],
    "rotation": {
        "primary": {"doctors": ["PractitionerRole/dr-a", "PractitionerRole/dr-b"], "per": "day",
                    "handoff": "09:00"},
        "backup": {"doctors": ["PractitionerRole/dr-b", "PractitionerRole/dr-a"], "per": "week",
                   "handoff": "09:00", "handoff_day": "mon"},
    },
}  # fmt: skip


def _example(example: Any, status: int = 200) -> dict[int | str, dict[str, Any]]:
    """An OpenAPI ``responses`` entry with one JSON example."""
    return {status: {"content": {"application/json": {"example": example}}}}


_DR_A = {"id": "PractitionerRole/dr-a", "name": "佐藤 一郎"}
_DR_B = {"id": "PractitionerRole/dr-b", "name": "鈴木 花子"}
SCHEDULE_EXAMPLE = {
    "start": "2026-04-01T00:00:00+09:00",
    "end": "2026-04-03T00:00:00+09:00",
    "segments": [
        {"start": "2026-04-01T18:00:00+09:00", "end": "2026-04-02T09:00:00+09:00",
         "primary": _DR_A, "backup": _DR_B, "labels": ["平日夜間"],
         "primary_override": None, "backup_override": None},
        {"start": "2026-04-02T18:00:00+09:00", "end": "2026-04-03T00:00:00+09:00",
         "primary": _DR_B, "backup": _DR_A, "labels": ["平日夜間"],
         "primary_override": None, "backup_override": None},
    ],
}  # fmt: skip
GAPS_EXAMPLE = {
    "days": 30,
    "gaps": [
        {"start": "2026-04-03T18:00:00+09:00", "end": "2026-04-03T20:00:00+09:00",
         "missing": "backup", "labels": ["平日夜間"]}
    ],
}  # fmt: skip
FAIRNESS_EXAMPLE = {
    "months": ["2026-04"],
    "doctors": [
        {"doctor": _DR_A,
         "months": {"2026-04": {"nights": 15, "days": 3, "hours": 236.0, "backup_nights": 15,
                                "backup_days": 2, "backup_hours": 240.0}},
         "total": {"nights": 15, "days": 3, "hours": 236.0, "backup_nights": 15,
                   "backup_days": 2}},
    ],
}  # fmt: skip
OVERRIDE_EXAMPLE = {
    "id": "5f1c0e7b9a7d4c0e8a1b2c3d4e5f6a7b",
    "layer": "primary",
    "assignee": "PractitionerRole/dr-b",
    "start": "2026-12-31T18:00:00+09:00",
    "end": "2027-01-01T09:00:00+09:00",
    "reason": "佐藤医師 学会のため交代",
    "swap_id": None,
    "version": 7,
}
TOKEN_EXAMPLE = {
    "id": "0c6f1a2b3c4d5e6f",
    "token": "q3V4z…(43 characters, shown once)",
    "doctor": "PractitionerRole/dr-a",
    "url": "https://renkei.example.jp/oncall/ical/q3V4z….ics",
}


# -- request bodies -----------------------------------------------------------------------------


class OverrideIn(BaseModel):
    layer: Literal["primary", "backup"] = "primary"
    assignee: str | None = Field(
        description="PractitionerRole/... taking the duty; null leaves nobody (a visible gap)"
    )
    start: datetime
    end: datetime
    reason: str = ""

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "layer": "primary",
                    "assignee": "PractitionerRole/dr-b",
                    "start": "2026-12-31T18:00:00+09:00",
                    "end": "2027-01-01T09:00:00+09:00",
                    "reason": "佐藤医師 学会のため交代",
                }
            ]
        }
    }


class Interval(BaseModel):
    start: datetime
    end: datetime


class SwapIn(BaseModel):
    layer: Literal["primary", "backup"] = "primary"
    first: Interval
    second: Interval
    reason: str = ""

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "layer": "primary",
                    "first": {
                        "start": "2026-05-01T18:00:00+09:00",
                        "end": "2026-05-02T09:00:00+09:00",
                    },
                    "second": {
                        "start": "2026-05-08T18:00:00+09:00",
                        "end": "2026-05-09T09:00:00+09:00",
                    },
                    "reason": "当番交代（双方合意）",
                }
            ]
        }
    }  # fmt: skip


class PlanIn(BaseModel):
    config: dict[str, Any] = Field(description="the whole group definition, as on creation")
    effective_from: datetime | None = Field(None, description="default now; never in the past")


class TokenIn(BaseModel):
    doctor: str | None = Field(
        None, description="PractitionerRole/... for a doctor's feed; omit for the group feed"
    )


# -- helpers --------------------------------------------------------------------------------


def _instant(value: str | None, cfg: GroupConfig, default: datetime, name: str) -> datetime:
    """ISO 8601; a value without offset is read in the group's time zone."""
    if value is None:
        return default
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        try:  # an unencoded "+09:00" arrives as " 09:00"
            t = datetime.fromisoformat(value.replace(" ", "+"))
        except ValueError as exc:
            raise errors.InvalidChange(f"{name}: {value!r} is not an ISO 8601 date-time") from exc
    return t if t.tzinfo else t.replace(tzinfo=cfg.tz)


def _group_json(view: service.GroupView) -> dict[str, Any]:
    return {
        "id": view.id,
        "version": view.version,
        "access": view.level,
        "effective_from": view.roster.plans[-1].effective_from.isoformat(),
        "config": config_to_dict(view.config),
    }


async def _body(request: Request) -> Any:
    raw = await request.body()
    kind = request.headers.get("content-type", "application/json").split(";")[0].strip()
    try:
        if kind in ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"):
            return yaml.safe_load(raw.decode("utf-8"))
        return orjson.loads(raw)
    except (yaml.YAMLError, orjson.JSONDecodeError, UnicodeDecodeError) as exc:
        raise errors.InvalidConfig(f"the body is not valid JSON/YAML: {exc}") from exc


# -- groups ---------------------------------------------------------------------------------


@router.post(
    "/groups",
    status_code=201,
    summary="Create a rotation group (JSON or YAML body)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"type": "object"},
                    "examples": {"group": {"summary": "two doctors", "value": EXAMPLE_GROUP}},
                },
                "application/yaml": {"schema": {"type": "string"}},
            },
        }
    },
)
async def create_group(
    request: Request,
    principal: Principal = Depends(require_principal),
    services: Services = Depends(get_services),
) -> dict[str, Any]:
    raw = await _body(request)

    def run() -> dict[str, Any]:
        with services.db.session(write=True) as session:
            view = service.create_group(
                session,
                services.clock,
                principal,
                raw,
                repository=services.engine.repository(session),
                search=service.fhir_search(services.engine, session),
            )
            return _group_json(view)

    return await run_in_threadpool(run)


@router.get("/groups", summary="The groups the caller may read")
def list_groups(
    principal: Principal = Depends(require_principal), session: Session = Depends(read_session)
) -> dict[str, Any]:
    return {
        "groups": [
            {"id": v.id, "name": v.config.name, "version": v.version, "access": v.level}
            for v in service.list_groups(session, principal)
        ]
    }


@router.get("/groups/{group_id}", summary="A group's current definition")
def get_group(
    group_id: str,
    principal: Principal = Depends(require_principal),
    session: Session = Depends(read_session),
) -> dict[str, Any]:
    return _group_json(service.open_group(session, principal, group_id))


@router.put("/groups/{group_id}/plan", summary="Change the group's definition from a time on")
def update_plan(
    group_id: str,
    body: PlanIn,
    principal: Principal = Depends(require_principal),
    services: Services = Depends(get_services),
) -> dict[str, Any]:
    with services.db.session(write=True) as session:
        view = service.update_plan(
            session,
            services.clock,
            principal,
            group_id,
            body.config,
            effective_from=body.effective_from,
            repository=services.engine.repository(session),
            search=service.fhir_search(services.engine, session),
        )
        return _group_json(view)


# -- queries --------------------------------------------------------------------------------


@router.get(
    "/groups/{group_id}/duty",
    summary="Who is primary and back-up at a time (default: now)",
    responses={
        200: {
            "content": {
                "application/json": {
                    "example": {
                        "at": "2026-12-31T23:00:00+09:00",
                        "on_duty": True,
                        "primary": {"id": "PractitionerRole/dr-a", "name": "佐藤 一郎"},
                        "backup": {"id": "PractitionerRole/dr-b", "name": "鈴木 花子"},
                        "coordinator": "PractitionerRole/coord-1",
                        "window": {
                            "start": "2026-12-28T18:00:00+09:00",
                            "end": "2027-01-04T09:00:00+09:00",
                            "labels": ["平日夜間", "休診: 年末年始", "祝日: 元日"],
                        },
                        "until": "2027-01-01T09:00:00+09:00",
                        "primary_override": None,
                        "backup_override": None,
                    }
                }
            }
        }
    },
)
def duty(
    group_id: str,
    at: str | None = Query(None, description="ISO 8601; without offset: group's local time"),
    principal: Principal = Depends(require_principal),
    session: Session = Depends(read_session),
    clock: Clock = Depends(get_clock),
) -> dict[str, Any]:
    view = service.open_group(session, principal, group_id)
    t = _instant(at, view.config, clock.now(), "at")
    return present.duty(on_duty(view.roster, t), view.config)


@router.get(
    "/groups/{group_id}/schedule",
    summary="Duty in a range, per group or per doctor",
    responses=_example(SCHEDULE_EXAMPLE),
)
def group_schedule(
    group_id: str,
    start: str | None = Query(None, description="default: now"),
    end: str | None = Query(None, description="default: start + 7 days"),
    doctor: str | None = Query(None, description="PractitionerRole/...: that doctor's shifts"),
    principal: Principal = Depends(require_principal),
    session: Session = Depends(read_session),
    clock: Clock = Depends(get_clock),
) -> dict[str, Any]:
    view = service.open_group(session, principal, group_id)
    cfg = view.config
    t0 = _instant(start, cfg, clock.now(), "start")
    t1 = _instant(end, cfg, t0 + timedelta(days=7), "end")
    out: dict[str, Any] = {"start": present.instant(t0, cfg), "end": present.instant(t1, cfg)}
    if doctor:
        ref = doctor if "/" in doctor else f"PractitionerRole/{doctor}"
        out["doctor"] = present.person(ref, cfg)
        out["shifts"] = [present.shift(s, cfg) for s in doctor_schedule(view.roster, ref, t0, t1)]
    else:
        out["segments"] = [present.segment(s, cfg) for s in schedule(view.roster, t0, t1)]
    return out


@router.get(
    "/groups/{group_id}/gaps",
    summary="Duty with no primary or no back-up, ahead",
    responses=_example(GAPS_EXAMPLE),
)
def gaps(
    group_id: str,
    days: int = Query(30, ge=1, le=366),
    principal: Principal = Depends(require_principal),
    session: Session = Depends(read_session),
    clock: Clock = Depends(get_clock),
) -> dict[str, Any]:
    view = service.open_group(session, principal, group_id)
    now = clock.now()
    found = coverage_gaps(view.roster, now, now + timedelta(days=days))
    return {"days": days, "gaps": [present.gap(g, view.config) for g in found]}


@router.get(
    "/groups/{group_id}/fairness",
    summary="Nights and holidays per doctor per month",
    responses=_example(FAIRNESS_EXAMPLE),
)
def fairness_summary(
    group_id: str,
    start: date | None = Query(None, description="first local date; default: 1st of month"),
    end: date | None = Query(None, description="date after the last; default: 3 months on"),
    principal: Principal = Depends(require_principal),
    session: Session = Depends(read_session),
    clock: Clock = Depends(get_clock),
) -> dict[str, Any]:
    view = service.open_group(session, principal, group_id)
    today = clock.now().astimezone(view.config.tz).date()
    d0 = start or today.replace(day=1)
    d1 = end or (d0 + timedelta(days=92)).replace(day=1)
    if d1 <= d0:
        raise errors.OutOfRange("end must be after start")
    return present.fairness(fairness(view.roster, d0, d1), view.config)


# -- changes --------------------------------------------------------------------------------


@router.post(
    "/groups/{group_id}/overrides",
    status_code=201,
    summary="Give duty to a doctor (代行); the part before now is ignored",
    responses=_example(OVERRIDE_EXAMPLE, 201),
)
def add_override(
    group_id: str,
    body: OverrideIn,
    principal: Principal = Depends(require_principal),
    services: Services = Depends(get_services),
) -> dict[str, Any]:
    clock = services.clock
    with services.db.session(write=True) as session:
        return service.add_override(
            session,
            clock,
            principal,
            group_id,
            layer=body.layer,
            assignee=body.assignee,
            start=body.start,
            end=body.end,
            reason=body.reason,
        )


@router.get("/groups/{group_id}/overrides", summary="Overrides, revoked ones included")
def list_overrides(
    group_id: str,
    principal: Principal = Depends(require_principal),
    session: Session = Depends(read_session),
) -> dict[str, Any]:
    return {"overrides": service.list_overrides(session, principal, group_id)}


@router.delete("/groups/{group_id}/overrides/{override_id}", summary="End an override now")
def revoke_override(
    group_id: str,
    override_id: str,
    principal: Principal = Depends(require_principal),
    services: Services = Depends(get_services),
) -> dict[str, Any]:
    clock = services.clock
    with services.db.session(write=True) as session:
        return service.revoke_override(session, clock, principal, group_id, override_id)


@router.post("/groups/{group_id}/swaps", status_code=201, summary="Two-sided swap of duty")
def swap(
    group_id: str,
    body: SwapIn,
    principal: Principal = Depends(require_principal),
    services: Services = Depends(get_services),
) -> dict[str, Any]:
    clock = services.clock
    with services.db.session(write=True) as session:
        return service.swap(
            session,
            clock,
            principal,
            group_id,
            layer=body.layer,
            first=(body.first.start, body.first.end),
            second=(body.second.start, body.second.end),
            reason=body.reason,
        )


@router.get("/groups/{group_id}/changes", summary="The change log: who changed what, when")
def changes(
    group_id: str,
    principal: Principal = Depends(require_principal),
    session: Session = Depends(read_session),
) -> dict[str, Any]:
    return {"changes": service.list_changes(session, principal, group_id)}


# -- calendar feeds -----------------------------------------------------------------------------


@router.post(
    "/groups/{group_id}/ical-tokens",
    status_code=201,
    summary="Create a calendar feed URL (the token is shown once)",
    responses=_example(TOKEN_EXAMPLE, 201),
)
def create_token(
    group_id: str,
    request: Request,
    body: TokenIn | None = None,
    principal: Principal = Depends(require_principal),
    services: Services = Depends(get_services),
) -> dict[str, Any]:
    with services.db.session(write=True) as session:
        out = service.create_ical_token(
            session, services.clock, principal, group_id, doctor=body.doctor if body else None
        )
    out["url"] = str(request.url_for("ical_feed", token=out["token"]))
    return out


@router.get("/groups/{group_id}/ical-tokens", summary="Calendar tokens (never their secrets)")
def list_tokens(
    group_id: str,
    principal: Principal = Depends(require_principal),
    session: Session = Depends(read_session),
) -> dict[str, Any]:
    return {"tokens": service.list_ical_tokens(session, principal, group_id)}


@router.delete("/groups/{group_id}/ical-tokens/{token_id}", summary="Revoke a calendar token")
def revoke_token(
    group_id: str,
    token_id: str,
    principal: Principal = Depends(require_principal),
    services: Services = Depends(get_services),
) -> dict[str, Any]:
    clock = services.clock
    with services.db.session(write=True) as session:
        return service.revoke_ical_token(session, clock, principal, group_id, token_id)


@router.get(
    "/ical/{token}.ics",
    name="ical_feed",
    summary="A calendar feed (text/calendar); the token in the URL is the credential",
    response_class=Response,
    responses={200: {"content": {"text/calendar": {}}}},
)
def ical_feed(
    token: str, session: Session = Depends(read_session), clock: Clock = Depends(get_clock)
) -> Response:
    roster, doctor = service.resolve_ical_token(session, token)
    now = clock.now()
    start, end = feed_range(now)
    body = (
        doctor_calendar(roster, doctor, start, end, now)
        if doctor
        else group_calendar(roster, start, end, now)
    )
    return Response(
        body,
        media_type="text/calendar; charset=utf-8",
        headers={"Cache-Control": "private, max-age=300", "Referrer-Policy": "no-referrer"},
    )
