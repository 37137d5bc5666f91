"""iCal feeds parse with icalendar and their events equal the range listing."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from icalendar import Calendar

from renkei.roster.config import parse_config
from renkei.roster.ical import doctor_calendar, group_calendar
from renkei.roster.snapshot import Override, Plan, Roster, doctor_schedule, schedule
from tests.rosterdata import DOCTORS, group_dict

TOKYO = ZoneInfo("Asia/Tokyo")
START = datetime(2026, 12, 1, tzinfo=TOKYO)
END = datetime(2027, 2, 1, tzinfo=TOKYO)
NOW = datetime(2026, 11, 30, tzinfo=TOKYO)


def _roster() -> Roster:
    swap = Override("o", "primary", DOCTORS[2], datetime(2026, 12, 31, 18, tzinfo=TOKYO),
                    datetime(2027, 1, 1, 9, tzinfo=TOKYO), seq=2)  # fmt: skip
    return Roster([Plan(datetime(2026, 4, 1, tzinfo=TOKYO), parse_config(group_dict()))], [swap])


def _events(raw: bytes) -> list[tuple[datetime, datetime, str]]:
    cal = Calendar.from_ical(raw)
    return [
        (ev.decoded("dtstart"), ev.decoded("dtend"), str(ev.get("summary")))
        for ev in cal.walk("VEVENT")
    ]


def test_group_calendar_events_equal_schedule() -> None:
    r = _roster()
    raw = group_calendar(r, START, END, NOW)
    events = _events(raw)
    listing = schedule(r, START, END)
    assert [(s, e) for s, e, _ in events] == [(seg.start, seg.end) for seg in listing]
    assert len(events) > 50
    names = r.config.doctor_names
    for (_, _, summary), seg in zip(events, listing, strict=True):
        assert names[seg.primary] in summary  # type: ignore[index]
    assert b"X-WR-TIMEZONE:Asia/Tokyo" in raw


def test_doctor_calendar_events_equal_doctor_schedule() -> None:
    r = _roster()
    for doctor in (DOCTORS[0], DOCTORS[2]):
        events = _events(doctor_calendar(r, doctor, START, END, NOW))
        shifts = doctor_schedule(r, doctor, START, END)
        assert [(s, e) for s, e, _ in events] == [(x.start, x.end) for x in shifts]
        assert [("主当番" in summary) for _, _, summary in events] == [
            x.role == "primary" for x in shifts
        ]
    # the override shows in dr-c's feed on New Year's Eve
    eve = datetime(2026, 12, 31, 20, tzinfo=TOKYO)
    c_events = _events(doctor_calendar(r, DOCTORS[2], START, END, NOW))
    assert any(s <= eve < e and "主当番" in summary for s, e, summary in c_events)


def test_calendar_uids_are_unique_and_stable() -> None:
    r = _roster()
    one = Calendar.from_ical(group_calendar(r, START, END, NOW))
    two = Calendar.from_ical(group_calendar(r, START, END, NOW + timedelta(hours=1)))
    uids = [str(ev["uid"]) for ev in one.walk("VEVENT")]
    assert len(uids) == len(set(uids))
    assert uids == [str(ev["uid"]) for ev in two.walk("VEVENT")]
