"""Office hours (診療時間): when a clinic answers its own patients' calls.

In office hours an urgent call goes to the patient's own clinic; outside them, to the
group's doctor on duty. A clinic is closed on national holidays (when the group observes
them) and on its closures, whatever its weekly pattern says.
"""

from __future__ import annotations

from datetime import datetime

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


__all__ = ["clinic_open"]
