"""A table-free roster: plain data in, the :class:`~renkei.calls.ports.DutyResolver` out.

Used by the scenario tests, by multi-process tests (loaded from a JSON file named by
``RENKEI_CALLS_ROSTER_FILE``) and by a single clinic that has no rotation group yet. The
real roster (renkei.roster) replaces it at the merge.

Office hours are per clinic and weekday, in Asia/Tokyo; Japanese national holidays
(``jpholiday``) and listed closure dates are closed. A clinic not listed keeps the default
hours, Monday to Friday 09:00-18:00.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jpholiday
from sqlalchemy.orm import Session

from renkei.calls.ports import Duty, EscalationPolicy

TOKYO = ZoneInfo("Asia/Tokyo")

#: weekday (0 = Monday) -> list of (opens, closes)
Hours = dict[int, list[tuple[time, time]]]

DEFAULT_HOURS: Hours = {d: [(time(9, 0), time(18, 0))] for d in range(5)}


@dataclass(frozen=True)
class StaticDuty:
    """One duty assignment; ``starts``/``ends`` None means "always"."""

    primary: str | None
    backup: str | None = None
    starts: datetime | None = None
    ends: datetime | None = None

    def covers(self, t: datetime) -> bool:
        return (self.starts is None or self.starts <= t) and (self.ends is None or t < self.ends)


@dataclass
class StaticGroup:
    id: str
    clinics: frozenset[str]
    duties: list[StaticDuty] = field(default_factory=list)
    policy: EscalationPolicy = field(default_factory=EscalationPolicy)


@dataclass
class StaticDutyResolver:
    groups: list[StaticGroup] = field(default_factory=list)
    office_hours: dict[str, Hours] = field(default_factory=dict)
    closures: dict[str, frozenset[date]] = field(default_factory=dict)
    default_policy: EscalationPolicy = field(default_factory=EscalationPolicy)

    # -- DutyResolver ----------------------------------------------------------------------

    def group_for_clinic(self, session: Session, clinic: str) -> str | None:
        for group in self.groups:
            if clinic in group.clinics:
                return group.id
        return None

    def duty_at(self, session: Session, group_id: str, t: datetime) -> Duty:
        group = self._group(group_id)
        for duty in group.duties if group else []:
            if duty.covers(t):
                return Duty(duty.primary, duty.backup, duty.starts, duty.ends)
        return Duty(None)

    def policy(self, session: Session, group_id: str | None, t: datetime) -> EscalationPolicy:
        group = self._group(group_id) if group_id else None
        return group.policy if group else self.default_policy

    def in_office_hours(self, session: Session, clinic: str, t: datetime) -> bool:
        local = t.astimezone(TOKYO)
        return any(
            opens <= local.time() < closes for opens, closes in self._hours_on(clinic, local.date())
        )

    def next_office_hours_start(self, session: Session, clinic: str, t: datetime) -> datetime:
        """The next opening at or after ``t``.

        >>> r = StaticDutyResolver()
        >>> friday_night = datetime(2026, 4, 3, 21, 0, tzinfo=TOKYO)
        >>> r.next_office_hours_start(None, "Organization/c", friday_night).isoformat()
        '2026-04-06T09:00:00+09:00'
        """
        if self.in_office_hours(session, clinic, t):
            return t
        local = t.astimezone(TOKYO)
        for offset in range(0, 60):
            day = local.date() + timedelta(days=offset)
            for opens, _closes in sorted(self._hours_on(clinic, day)):
                start = datetime.combine(day, opens, TOKYO)
                if start >= local:
                    return start
        raise ValueError(f"{clinic} has no office hours in the next 60 days")

    # -- helpers ---------------------------------------------------------------------------

    def _group(self, group_id: str) -> StaticGroup | None:
        return next((g for g in self.groups if g.id == group_id), None)

    def _hours_on(self, clinic: str, day: date) -> list[tuple[time, time]]:
        if jpholiday.is_holiday(day) or day in self.closures.get(clinic, frozenset()):
            return []
        hours = self.office_hours.get(clinic, DEFAULT_HOURS)
        return hours.get(day.weekday(), [])

    # -- loading ---------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StaticDutyResolver:
        """Build from JSON-shaped data (the format is in docs/urgent-calls.md).

        >>> r = StaticDutyResolver.from_dict({"groups": [{"id": "g", "clinics": ["Organization/c"],
        ...     "ack_timeout_seconds": 1, "duties": [{"primary": "PractitionerRole/p"}]}]})
        >>> r.duty_at(None, "g", datetime(2026, 4, 1, tzinfo=TOKYO)).primary
        'PractitionerRole/p'
        """
        groups = [
            StaticGroup(
                id=str(g["id"]),
                clinics=frozenset(g.get("clinics", [])),
                duties=[
                    StaticDuty(
                        primary=d.get("primary"),
                        backup=d.get("backup"),
                        starts=_instant(d.get("starts")),
                        ends=_instant(d.get("ends")),
                    )
                    for d in g.get("duties", [])
                ],
                policy=EscalationPolicy(
                    ack_timeout=timedelta(seconds=float(g.get("ack_timeout_seconds", 300))),
                    coordinator=g.get("coordinator"),
                    max_rounds=int(g.get("max_rounds", 2)),
                ),
            )
            for g in data.get("groups", [])
        ]
        office: dict[str, Hours] = {}
        for clinic, days in (data.get("office_hours") or {}).items():
            office[clinic] = {
                int(day): [(time.fromisoformat(a), time.fromisoformat(b)) for a, b in spans]
                for day, spans in days.items()
            }
        closures = {
            clinic: frozenset(date.fromisoformat(d) for d in days)
            for clinic, days in (data.get("closures") or {}).items()
        }
        return cls(groups=groups, office_hours=office, closures=closures)

    @classmethod
    def from_file(cls, path: str | Path) -> StaticDutyResolver:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


def _instant(raw: str | None) -> datetime | None:
    if raw is None:
        return None
    value = datetime.fromisoformat(raw)
    if value.tzinfo is None:
        value = value.replace(tzinfo=TOKYO)
    return value


__all__ = ["DEFAULT_HOURS", "TOKYO", "StaticDuty", "StaticDutyResolver", "StaticGroup"]
