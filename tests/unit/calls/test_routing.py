"""Routing rules over a table-free roster (no database needed: session=None)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from renkei.calls.ports import EscalationPolicy, PrimaryCare
from renkei.calls.routing import plan_route
from renkei.calls.static_roster import StaticDuty, StaticDutyResolver, StaticGroup
from tests.calls_support import jst

CLINIC, OTHER = "Organization/a", "Organization/b"
DOCTOR = "PractitionerRole/doc"
CARE = PrimaryCare(clinic=CLINIC, doctor=DOCTOR)
S: Any = None  # the static resolver never touches the session


def resolver(**duty: Any) -> StaticDutyResolver:
    return StaticDutyResolver(
        groups=[
            StaticGroup(
                "g",
                frozenset({CLINIC}),
                [
                    StaticDuty(
                        **(
                            duty
                            or {"primary": "PractitionerRole/p", "backup": "PractitionerRole/b"}
                        )
                    )
                ],
                EscalationPolicy(timedelta(minutes=5), "PractitionerRole/c", 2),
            )
        ]
    )


def test_plan_route_weekday_office_hours_primary_doctor_then_coordinator() -> None:
    plan = plan_route(S, resolver(), CARE, "stat", jst(2026, 4, 1, 10, 0))
    assert plan.route == "office-hours"
    assert [(s.role, s.target) for s in plan.chain] == [
        ("primary-doctor", DOCTOR), ("coordinator", "PractitionerRole/c")
    ]  # fmt: skip
    assert plan.chain[0].timeout_s == 300 and plan.max_rounds == 2


def test_plan_route_weekday_night_duty_backup_coordinator() -> None:
    plan = plan_route(S, resolver(), CARE, "asap", jst(2026, 4, 1, 18, 0))
    assert plan.route == "on-duty"
    assert [s.role for s in plan.chain] == ["duty-primary", "duty-backup", "coordinator"]


def test_plan_route_holiday_and_saturday_are_after_hours() -> None:
    for when in (jst(2026, 4, 29, 11, 0), jst(2026, 4, 4, 11, 0), jst(2027, 1, 1, 10, 0)):
        assert plan_route(S, resolver(), CARE, "stat", when).route == "on-duty"


def test_plan_route_routine_after_hours_is_queued_for_next_opening() -> None:
    plan = plan_route(S, resolver(), CARE, "routine", jst(2026, 4, 3, 19, 0))  # Friday night
    assert plan.route == "queued"
    assert plan.queue_until == jst(2026, 4, 6, 9, 0)
    assert plan.queue_owner == DOCTOR and plan.chain == ()


def test_plan_route_uncovered_clinic_goes_to_primary_doctor_with_warning() -> None:
    plan = plan_route(S, resolver(), PrimaryCare(OTHER, DOCTOR), "stat", jst(2026, 4, 1, 23, 0))
    assert plan.route == "uncovered"
    assert [s.target for s in plan.chain] == [DOCTOR]
    assert plan.warning and "not covered" in plan.warning


def test_plan_route_nobody_on_duty_falls_back_to_primary_doctor() -> None:
    plan = plan_route(S, resolver(primary=None), CARE, "stat", jst(2026, 4, 1, 23, 0))
    assert [s.target for s in plan.chain] == [DOCTOR, "PractitionerRole/c"]
    assert plan.warning and "nobody is on duty" in plan.warning


def test_plan_route_no_clinic_no_doctor_is_an_empty_chain() -> None:
    plan = plan_route(S, resolver(), PrimaryCare(None, None), "stat", jst(2026, 4, 1, 23, 0))
    assert plan.route == "nobody" and plan.chain == ()


def test_plan_route_clinic_without_doctor_pages_the_clinic() -> None:
    plan = plan_route(S, resolver(), PrimaryCare(CLINIC, None), "stat", jst(2026, 4, 1, 10, 0))
    assert (plan.chain[0].role, plan.chain[0].target) == ("clinic", CLINIC)
