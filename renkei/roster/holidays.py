"""Days off: Japanese national holidays (祝日, incl. 振替休日 and 国民の休日) and closures.

National holidays come from ``jpholiday``, which follows the 国民の祝日に関する法律 including
substitute holidays (振替休日: a holiday falling on Sunday moves to the next weekday) and
citizens' holidays (国民の休日: a weekday squeezed between two holidays). Group closures
(年末年始, 夏季休診) are data in the group's config.

>>> national_holidays(2026)[date(2026, 5, 6)]
'憲法記念日 振替休日'
>>> national_holidays(2026)[date(2026, 9, 22)]
'国民の休日'
"""

from __future__ import annotations

from datetime import date
from functools import lru_cache

import jpholiday

from renkei.roster.config import GroupConfig


@lru_cache(maxsize=256)
def national_holidays(year: int) -> dict[date, str]:
    """Japan's national holidays of ``year``, by date, with their Japanese names."""
    return {day: name for day, name in jpholiday.year_holidays(year)}


def days_off(cfg: GroupConfig, year: int) -> dict[date, list[str]]:
    """Each day of ``year`` the group takes off, with why ("祝日: 元日", "休診: 年末年始").

    Group-wide and clinic-specific closures both count: while one clinic is closed its
    patients are covered by the group's duty doctor.
    """
    out: dict[date, list[str]] = {}
    if cfg.holidays.national:
        for day, name in national_holidays(year).items():
            out.setdefault(day, []).append(f"祝日: {name}")
    for closure in cfg.closures:
        # a recurring closure starting the year before may spill into this year
        for start_year in (year - 1, year):
            for day in closure.dates(start_year):
                if day.year == year:
                    out.setdefault(day, []).append(f"休診: {closure.name}")
    return out


def day_off_reasons(cfg: GroupConfig, day: date, clinic: str | None = None) -> list[str]:
    """Why ``day`` is off for the group, or for one clinic when ``clinic`` is given."""
    reasons = []
    if cfg.holidays.national:
        name = national_holidays(day.year).get(day)
        if name:
            reasons.append(f"祝日: {name}")
    for closure in cfg.closures:
        if clinic is not None and closure.clinics and clinic not in closure.clinics:
            continue
        if any(day in closure.dates(y) for y in (day.year - 1, day.year)):
            reasons.append(f"休診: {closure.name}")
    return reasons


__all__ = ["day_off_reasons", "days_off", "national_holidays"]
