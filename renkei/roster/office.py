"""Office hours (診療時間): when a clinic answers its own patients' calls.

In office hours an urgent call goes to the patient's own clinic; outside them, to the
group's doctor on duty. A clinic is closed on national holidays (when the group observes
them) and on its closures, whatever its weekly pattern says.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from renkei.roster.config import GroupConfig
from renkei.roster.holidays import day_off_reasons


def clinic_open(cfg: GroupConfig, clinic_id: str, t: datetime) -> bool:
    """Whether ``clinic_id`` (a member of ``cfg``) is in office hours at aware instant ``t``."""
    if t.tzinfo is None:
        raise ValueError("clinic_open needs a timezone-aware instant")
    clinic = cfg.clinic(clinic_id)
    if clinic is None:
        return False
    local = t.astimezone(cfg.tz)
    day = local.date()
    if day_off_reasons(cfg, day, clinic_id):
        return False
    wd = day.weekday()
    hours = clinic.office_hours
    ranges = hours.weekday if wd < 5 else hours.saturday if wd == 5 else hours.sunday
    now = local.time().replace(tzinfo=None)
    return any(start <= now < end for start, end in ranges)


def next_opening(cfg: GroupConfig, clinic_id: str, t: datetime, days: int = 60) -> datetime | None:
    """The first instant at or after ``t`` when ``clinic_id`` is in office hours.

    ``t`` itself when open; None when the clinic opens on none of the next ``days`` days
    (or has no office hours at all).
    """
    if clinic_open(cfg, clinic_id, t):
        return t
    clinic = cfg.clinic(clinic_id)
    if clinic is None:
        return None
    tz = cfg.tz
    local = t.astimezone(tz)
    hours = clinic.office_hours
    for offset in range(days + 1):
        day = local.date() + timedelta(days=offset)
        if day_off_reasons(cfg, day, clinic_id):
            continue
        wd = day.weekday()
        ranges = hours.weekday if wd < 5 else hours.saturday if wd == 5 else hours.sunday
        for start, _end in ranges:
            opening = datetime.combine(day, start, tzinfo=tz)
            if opening >= t:
                return opening
    return None


__all__ = ["clinic_open", "next_opening"]
