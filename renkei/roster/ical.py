"""Calendar feeds (iCalendar, RFC 5545) of duty, built with ``icalendar``.

One VEVENT per entry of the range listing (a group segment, or a doctor's shift), so the
feed shows exactly what ``GET /oncall/groups/{id}/schedule`` lists. UIDs are stable for a
given entry (group, role, start, end, people), so phones update rather than duplicate.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from icalendar import Calendar, Event

from renkei.roster.snapshot import Roster, doctor_schedule, schedule

PRODID = "-//renkei//roster//JA"
#: how much a feed shows: a little of the past, the months ahead
PAST = timedelta(days=31)
AHEAD = timedelta(days=365)


def _uid(*parts: object) -> str:
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()[:32]
    return f"{digest}@renkei"


def _calendar(name: str, tz: str) -> Calendar:
    cal = Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", "PUBLISH")
    cal.add("x-wr-calname", name)
    cal.add("x-wr-timezone", tz)
    return cal


def group_calendar(roster: Roster, start: datetime, end: datetime, now: datetime) -> bytes:
    """The group's duty in ``[start, end)``: one event per segment, primary and back-up named."""
    cfg = roster.config
    names = cfg.doctor_names
    cal = _calendar(f"{cfg.name} 当番表", cfg.timezone)
    for seg in schedule(roster, start, end):
        primary = names.get(seg.primary, seg.primary) if seg.primary else "（未定）"
        backup = names.get(seg.backup, seg.backup) if seg.backup else "（未定）"
        ev = Event()
        ev.add("uid", _uid(roster.group_id, "group", seg.start, seg.end, seg.primary, seg.backup))
        ev.add("dtstamp", now)
        ev.add("dtstart", seg.start)
        ev.add("dtend", seg.end)
        ev.add("summary", f"当番 {primary} / 副 {backup}")
        ev.add("description", "、".join(seg.window.labels))
        ev.add("transp", "TRANSPARENT")
        cal.add_component(ev)
    return cal.to_ical()


def doctor_calendar(
    roster: Roster, doctor: str, start: datetime, end: datetime, now: datetime
) -> bytes:
    """One doctor's duty in ``[start, end)``: one event per shift (主当番 or 副当番)."""
    cfg = roster.config
    name = cfg.doctor_names.get(doctor, doctor)
    cal = _calendar(f"{name} 当番 ({cfg.name})", cfg.timezone)
    for shift in doctor_schedule(roster, doctor, start, end):
        ev = Event()
        ev.add("uid", _uid(roster.group_id, doctor, shift.role, shift.start, shift.end))
        ev.add("dtstamp", now)
        ev.add("dtstart", shift.start)
        ev.add("dtend", shift.end)
        ev.add("summary", ("主当番" if shift.role == "primary" else "副当番") + f" {cfg.name}")
        ev.add("description", "、".join(shift.labels))
        ev.add("categories", [shift.role])
        cal.add_component(ev)
    return cal.to_ical()


def feed_range(now: datetime) -> tuple[datetime, datetime]:
    return now - PAST, now + AHEAD


__all__ = ["doctor_calendar", "feed_range", "group_calendar"]
