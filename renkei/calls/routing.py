"""Routing: who gets a call, decided once from the roster and snapshotted onto the call.

Rules (issue 7, docs/urgent-calls.md):

1. Inside the primary clinic's office hours: the patient's primary doctor (or the clinic
   itself when no doctor is named), then the group's coordinator.
2. Outside office hours, routine priority: queued for the primary doctor's next office
   hours instead of waking the doctor on duty.
3. Outside office hours otherwise: the rotation group's primary on duty, the back-up, then
   the coordinator.
4. A clinic no group covers: the primary doctor, with a warning on the call.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from renkei.calls.escalation import Step
from renkei.calls.ports import DutyResolver, PrimaryCare


@dataclass(frozen=True)
class RoutePlan:
    #: office-hours | on-duty | uncovered | queued | nobody
    route: str
    chain: tuple[Step, ...]
    max_rounds: int
    clinic: str | None
    group_id: str | None
    coordinator: str | None
    warning: str | None = None
    #: for ``queued``: when the call is routed again, and who holds it meanwhile
    queue_until: datetime | None = None
    queue_owner: str | None = None


def plan_route(
    session: Session, duty: DutyResolver, care: PrimaryCare, priority: str, t: datetime
) -> RoutePlan:
    """Decide the chain for a call raised at ``t``."""
    clinic = care.clinic
    group = duty.group_for_clinic(session, clinic) if clinic else None
    policy = duty.policy(session, group, t)
    timeout_s = policy.ack_timeout.total_seconds()
    coordinator = policy.coordinator if group else None
    first_contact = care.doctor or clinic
    first_role = "primary-doctor" if care.doctor else "clinic"

    def plan(
        route: str, steps: list[tuple[str, str | None]], warning: str | None = None
    ) -> RoutePlan:
        return RoutePlan(
            route=route,
            chain=_chain(steps, timeout_s),
            max_rounds=policy.max_rounds,
            clinic=clinic,
            group_id=group,
            coordinator=coordinator,
            warning=warning,
        )

    if clinic is None:
        warning = "the patient has no primary clinic on an active CareTeam"
        if care.doctor is None:
            return plan("nobody", [], warning + " and no primary doctor")
        return plan("uncovered", [("primary-doctor", care.doctor)], warning)

    if duty.in_office_hours(session, clinic, t):
        return plan("office-hours", [(first_role, first_contact), ("coordinator", coordinator)])

    if priority == "routine":
        until = duty.next_office_hours_start(session, clinic, t)
        return RoutePlan(
            route="queued",
            chain=(),
            max_rounds=policy.max_rounds,
            clinic=clinic,
            group_id=group,
            coordinator=coordinator,
            queue_until=until,
            queue_owner=first_contact,
        )

    if group is None:
        return plan(
            "uncovered",
            [(first_role, first_contact)],
            f"{clinic} is not covered by any rotation group; the call goes to the primary "
            "doctor after hours",
        )

    on_duty = duty.duty_at(session, group, t)
    steps = [
        ("duty-primary", on_duty.primary),
        ("duty-backup", on_duty.backup),
        ("coordinator", coordinator),
    ]
    if on_duty.primary is None and on_duty.backup is None:
        return plan(
            "on-duty",
            [(first_role, first_contact), ("coordinator", coordinator)],
            f"nobody is on duty in group {group}; paging the primary doctor",
        )
    return plan("on-duty", steps)


def _chain(steps: list[tuple[str, str | None]], timeout_s: float) -> tuple[Step, ...]:
    """Steps without a target are dropped, and nobody is paged twice in a row of one chain.

    >>> [s.target for s in _chain([("a", "X"), ("b", None), ("c", "X"), ("d", "Y")], 60)]
    ['X', 'Y']
    """
    out: list[Step] = []
    seen: set[str] = set()
    for role, target in steps:
        if target and target not in seen:
            seen.add(target)
            out.append(Step(role, target, timeout_s))
    return tuple(out)


__all__ = ["RoutePlan", "plan_route"]
