"""on_duty, schedule, overrides, gaps and fairness over fixed dates (Asia/Tokyo)."""

from __future__ import annotations

import itertools
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from renkei.roster.config import parse_config
from renkei.roster.errors import OutOfRange
from renkei.roster.snapshot import (
    Override,
    Plan,
    Roster,
    coverage_gaps,
    doctor_schedule,
    fairness,
    on_duty,
    schedule,
)
from tests.rosterdata import DOCTORS, group_dict

TOKYO = ZoneInfo("Asia/Tokyo")
START = datetime(2026, 4, 1, 9, tzinfo=TOKYO)  # a Wednesday


def t(month: int, day: int, hour: int = 0, minute: int = 0, year: int = 2026) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=TOKYO)


def roster(overrides: list[Override] | None = None, **changes: object) -> Roster:
    return Roster([Plan(START, parse_config(group_dict(**changes)))], overrides or [])


def test_on_duty_rotates_per_day_and_backup_per_week() -> None:
    r = roster()
    first = on_duty(r, t(4, 1, 20))
    second = on_duty(r, t(4, 2, 20))
    assert first.primary == DOCTORS[0]
    assert second.primary == DOCTORS[1]
    # back-up rotates weekly from dr-d; Mon 4/6 09:00 hands over to dr-e
    assert first.backup == second.backup == DOCTORS[3]
    assert on_duty(r, t(4, 6, 20)).backup == DOCTORS[4]
    assert first.window is not None and first.window.labels == ("平日夜間",)
    assert first.coordinator == "PractitionerRole/coord"


def test_on_duty_none_in_office_hours_and_before_group_start() -> None:
    r = roster()
    office = on_duty(r, t(4, 2, 11))
    assert office.primary is None and office.backup is None and office.window is None
    assert on_duty(r, t(3, 31, 20)).primary is None


def test_on_duty_handoff_splits_weekend_at_nine() -> None:
    r = roster()
    sat = on_duty(r, t(4, 4, 20)).primary
    sun = on_duty(r, t(4, 5, 10)).primary
    assert sat is not None and sun is not None and sat != sun
    # Sat afternoon and Sat night are one handoff day: same doctor
    assert on_duty(r, t(4, 4, 14)).primary == sat
    assert on_duty(r, t(4, 5, 8, 59)).primary == sat


def test_on_duty_midnight_crossing_keeps_same_doctor() -> None:
    r = roster()
    assert on_duty(r, t(4, 7, 23, 59)).primary == on_duty(r, t(4, 8, 0, 1)).primary
    assert on_duty(r, t(4, 8, 8, 59)).primary == on_duty(r, t(4, 7, 18)).primary
    assert on_duty(r, t(4, 8, 9)).primary is None


def test_on_duty_year_end_and_new_year_covered_all_day() -> None:
    r = roster()
    for moment in (t(12, 29, 12), t(12, 31, 15), t(1, 1, 12, year=2027), t(1, 3, 23, year=2027)):
        assert on_duty(r, moment).primary in DOCTORS
    assert on_duty(r, t(1, 4, 12, year=2027)).primary is None
    duty = on_duty(r, t(1, 1, 0, year=2027))
    assert duty.window is not None and "祝日: 元日" in duty.window.labels


def test_on_duty_rejects_naive_instants() -> None:
    with pytest.raises(ValueError):
        on_duty(roster(), datetime(2026, 4, 1, 20))


def test_override_wins_and_newer_override_wins_over_older() -> None:
    base = on_duty(roster(), t(4, 10, 20)).primary
    other = DOCTORS[5] if base != DOCTORS[5] else DOCTORS[4]
    o1 = Override("o1", "primary", other, t(4, 10, 18), t(4, 11, 9), seq=2)
    r = roster([o1])
    assert on_duty(r, t(4, 10, 20)).primary == other
    assert on_duty(r, t(4, 10, 20)).segment.primary_override == "o1"  # type: ignore[union-attr]
    o2 = Override("o2", "primary", DOCTORS[2], t(4, 10, 22), t(4, 10, 23), seq=3)
    r = roster([o1, o2])
    assert on_duty(r, t(4, 10, 22, 30)).primary == DOCTORS[2]
    assert on_duty(r, t(4, 10, 23, 30)).primary == other


def test_override_outside_windows_gives_no_duty() -> None:
    o = Override("o", "primary", DOCTORS[1], t(4, 10, 10), t(4, 10, 20), seq=2)
    r = roster([o])
    assert on_duty(r, t(4, 10, 12)).primary is None
    assert on_duty(r, t(4, 10, 19)).primary == DOCTORS[1]


def test_revoked_override_applies_only_until_revocation() -> None:
    o = Override("o", "primary", DOCTORS[5], t(4, 7, 18), t(4, 8, 9), seq=2, revoked_at=t(4, 7, 21))
    r = roster([o])
    assert on_duty(r, t(4, 7, 20)).primary == DOCTORS[5]
    assert on_duty(r, t(4, 7, 22)).primary == on_duty(roster(), t(4, 7, 22)).primary


def test_schedule_lists_the_same_answers_as_on_duty() -> None:
    r = roster()
    segs = schedule(r, t(4, 1), t(4, 15))
    assert segs[0].start == t(4, 1, 18)  # the group starts at 09:00 on 4/1, in office hours
    for seg in segs:
        mid = seg.start + (seg.end - seg.start) / 2
        d = on_duty(r, mid)
        assert (d.primary, d.backup) == (seg.primary, seg.backup)
    assert all(a.end <= b.start for a, b in itertools.pairwise(segs))


def test_doctor_schedule_merges_contiguous_time() -> None:
    r = roster()
    shifts = doctor_schedule(r, DOCTORS[0], t(4, 1), t(4, 9))
    primary = [s for s in shifts if s.role == "primary"]
    # six doctors, one per day: dr-a again on 4/7
    assert [(s.start, s.end) for s in primary] == [
        (t(4, 1, 18), t(4, 2, 9)),
        (t(4, 7, 18), t(4, 8, 9)),
    ]
    backup = [s for s in doctor_schedule(r, DOCTORS[3], t(4, 1), t(4, 8)) if s.role == "backup"]
    assert backup[0].start == t(4, 1, 18)


def test_coverage_gaps_without_backup_and_with_nobody_override() -> None:
    cfg = group_dict()
    del cfg["rotation"]["backup"]
    r = Roster([Plan(START, parse_config(cfg))])
    gaps = coverage_gaps(r, t(4, 1), t(4, 3))
    assert [g.missing for g in gaps] == ["backup", "backup"]
    hole = Override("x", "primary", None, t(4, 2, 18), t(4, 2, 20), seq=2)
    gaps = coverage_gaps(roster([hole]), t(4, 1), t(4, 3))
    assert [(g.start, g.end, g.missing) for g in gaps] == [(t(4, 2, 18), t(4, 2, 20), "primary")]


def test_coverage_gaps_backup_same_as_primary() -> None:
    same = on_duty(roster(), t(4, 2, 20)).primary
    o = Override("b", "backup", same, t(4, 2, 18), t(4, 3, 9), seq=2)
    gaps = coverage_gaps(roster([o]), t(4, 1), t(4, 4))
    assert [g.missing for g in gaps] == ["backup-is-primary"]


def test_fairness_counts_nights_and_days_per_month() -> None:
    r = roster()
    f = fairness(r, date(2026, 4, 1), date(2026, 6, 1))
    assert f.months == ["2026-04", "2026-05"]
    april_nights = sum(rows["2026-04"].nights for rows in f.doctors.values())
    assert april_nights == 30  # every night of April is covered (weekday nights + weekends)
    may_days = sum(rows["2026-05"].days for rows in f.doctors.values())
    # noon duty in May 2026: 5 Saturdays? no (13:00 start) -> 5 Sundays + 3,4,5,6 GW holidays
    sundays = 5  # 3, 10, 17, 24, 31
    assert may_days == sundays + 3  # 5/4, 5/5, 5/6 (5/3 is a Sunday)
    counts = [rows["2026-04"].nights for rows in f.doctors.values()]
    assert max(counts) - min(counts) <= 1


def test_range_and_horizon_limits() -> None:
    r = roster()
    with pytest.raises(OutOfRange):
        schedule(r, t(4, 1), t(4, 1, year=2030))
    with pytest.raises(OutOfRange):
        on_duty(r, datetime(2300, 1, 1, tzinfo=TOKYO))


def test_plan_change_continues_rotation_when_layer_unchanged() -> None:
    cfg1 = parse_config(group_dict())
    cfg2 = parse_config(group_dict(closures=[]))
    one = Roster([Plan(START, cfg1)])
    two = Roster([Plan(START, cfg1), Plan(t(6, 1, 12), cfg2, 2)])
    for moment in (t(6, 2, 20), t(6, 20, 12), t(11, 3, 12)):
        assert on_duty(one, moment).primary == on_duty(two, moment).primary
    # the closure is gone in plan 2: 12/30 daytime is no longer duty
    assert on_duty(one, t(12, 30, 12)).primary is not None
    assert on_duty(two, t(12, 30, 12)).primary is None


def test_per_window_rotation_gives_whole_weekend_to_one_doctor() -> None:
    cfg = group_dict()
    cfg["rotation"]["primary"]["per"] = "window"
    r = Roster([Plan(START, parse_config(cfg))])
    assert on_duty(r, t(4, 4, 14)).primary == on_duty(r, t(4, 6, 8)).primary
    assert on_duty(r, t(4, 6, 20)).primary != on_duty(r, t(4, 6, 8)).primary


def test_lookahead_seams_do_not_change_answers() -> None:
    a = roster()
    b = roster()
    far = t(3, 20, 12, year=2027)
    late = on_duty(a, far)  # a lays out the whole year first
    for moment in (t(10, 1, 20), t(12, 31, 12), far):
        assert on_duty(b, moment) == on_duty(a, moment)
    assert late == on_duty(b, far)
