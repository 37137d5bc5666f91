"""Duty windows (当番時間帯): the instants a group covers, as merged UTC intervals.

Weekly rules and day-off rules are laid out in the group's local wall-clock time, turned
into UTC instants, and merged where they touch or overlap, so a holiday Monday after a
weekend becomes one window from Saturday 13:00 to Tuesday 09:00 (below: 22 March 2027 is
春分の日 振替休日).

>>> from renkei.roster.config import parse_config
>>> cfg = parse_config({
...     "name": "g", "coordinator": "PractitionerRole/c",
...     "clinics": [{"id": "Organization/o"}], "doctors": ["PractitionerRole/d"],
...     "windows": [
...         {"name": "平日夜間", "days": ["mon", "tue", "wed", "thu", "fri"],
...          "start": "18:00", "end": "09:00"},
...         {"name": "週末", "days": ["sat"], "start": "13:00", "end": "09:00",
...          "end_days_later": 2}],
...     "rotation": {"primary": {"doctors": ["PractitionerRole/d"]}}})
>>> tokyo = cfg.tz
>>> w = duty_windows(cfg, datetime(2027, 3, 19, 12, tzinfo=tokyo),
...                  datetime(2027, 3, 24, tzinfo=tokyo))
>>> [(x.start.astimezone(tokyo).strftime("%m-%d %H:%M"),
...   x.end.astimezone(tokyo).strftime("%m-%d %H:%M")) for x in w]
[('03-19 18:00', '03-20 09:00'), ('03-20 13:00', '03-23 09:00'), ('03-23 18:00', '03-24 00:00')]
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from renkei.roster.config import GroupConfig
from renkei.roster.holidays import days_off


@dataclass(frozen=True)
class Window:
    """One merged duty window; ``labels`` say which rules made it (平日夜間, 祝日: 元日 ...)."""

    start: datetime
    end: datetime
    labels: tuple[str, ...]

    def __contains__(self, t: datetime) -> bool:
        return self.start <= t < self.end


def local_instant(day: date, at: time, tz: ZoneInfo) -> datetime:
    """The UTC instant of wall-clock ``at`` on ``day`` in ``tz`` (the earlier one in a DST fold)."""
    return datetime.combine(day, at, tzinfo=tz).astimezone(UTC)


def _raw_intervals(
    cfg: GroupConfig, first: date, last: date
) -> list[tuple[datetime, datetime, str]]:
    tz = cfg.tz
    out: list[tuple[datetime, datetime, str]] = []
    off: dict[date, list[str]] = {}
    for year in range(first.year, last.year + 1):
        off.update(days_off(cfg, year))
    day = first
    one = timedelta(days=1)
    hol = cfg.holidays
    while day <= last:
        wd = day.weekday()
        for rule in cfg.windows:
            if wd in rule.days:
                s = local_instant(day, rule.start, tz)
                e = local_instant(day + timedelta(days=rule.end_days_later), rule.end, tz)
                if e > s:
                    out.append((s, e, rule.name))
        for reason in off.get(day, ()):
            s = local_instant(day, hol.start, tz)
            e = local_instant(day + (one if hol.end <= hol.start else timedelta(0)), hol.end, tz)
            if e > s:
                out.append((s, e, reason))
        day += one
    return out


def duty_windows(cfg: GroupConfig, start: datetime, end: datetime) -> list[Window]:
    """The group's duty windows overlapping ``[start, end)``, clipped to it, sorted, disjoint."""
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("duty_windows needs timezone-aware instants")
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    if end <= start:
        return []
    tz = cfg.tz
    # Rules started up to a week earlier may still be running at ``start``.
    first = start.astimezone(tz).date() - timedelta(days=8)
    last = end.astimezone(tz).date() + timedelta(days=1)
    raw = sorted(_raw_intervals(cfg, first, last))
    merged: list[tuple[datetime, datetime, list[str]]] = []
    for s, e, label in raw:
        if merged and s <= merged[-1][1]:
            cur = merged[-1]
            if e > cur[1]:
                merged[-1] = (cur[0], e, cur[2])
            if label not in cur[2]:
                cur[2].append(label)
        else:
            merged.append((s, e, [label]))
    out = []
    for s, e, labels in merged:
        s2, e2 = max(s, start), min(e, end)
        if e2 > s2:
            out.append(Window(s2, e2, tuple(labels)))
    return out


__all__ = ["Window", "duty_windows", "local_instant"]
