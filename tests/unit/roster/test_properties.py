"""Property-based tests: for any generated group and any instant of a year, the roster
answers exactly one primary inside duty windows and none outside; overrides win; the
instant answer equals the range listing; time zones other than Asia/Tokyo work (DST)."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import jpholiday
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from renkei.roster.config import DAY_NAMES, GroupConfig, parse_config
from renkei.roster.snapshot import Override, Plan, Roster, on_duty, schedule

ZONES = ["Asia/Tokyo", "America/New_York", "Europe/Berlin", "Australia/Sydney"]
YEAR_START = date(2026, 4, 1)
MINUTES_IN_YEAR = 365 * 24 * 60


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


@st.composite
def groups(draw: st.DrawFn) -> dict[str, Any]:
    n_doctors = draw(st.integers(1, 6))
    doctors = [f"PractitionerRole/d{i}" for i in range(n_doctors)]
    quarter = st.integers(0, 95).map(lambda q: q * 15)
    windows = []
    for i in range(draw(st.integers(1, 3))):
        start = draw(quarter)
        later = draw(st.integers(0, 2))
        end = draw(quarter)
        if later == 0 and end <= start:
            later = 1
        days = draw(st.lists(st.sampled_from(DAY_NAMES), min_size=1, max_size=7, unique=True))
        windows.append(
            {"name": f"w{i}", "days": days, "start": _hhmm(start), "end": _hhmm(end),
             "end_days_later": later}
        )  # fmt: skip

    def layer() -> dict[str, Any]:
        return {
            "doctors": draw(st.permutations(doctors)),
            "per": draw(st.sampled_from(["day", "week", "window"])),
            "handoff": _hhmm(draw(quarter)),
            "handoff_day": draw(st.sampled_from(DAY_NAMES)),
        }

    rotation = {"primary": layer()}
    if draw(st.booleans()):
        rotation["backup"] = layer()
    closures = []
    if draw(st.booleans()):
        closures.append({"name": "年末年始", "from": "12-29", "to": "01-03"})
    hol_start, hol_end = draw(quarter), draw(quarter)
    return {
        "name": "generated",
        "timezone": draw(st.sampled_from(ZONES)),
        "coordinator": "PractitionerRole/coord",
        "clinics": [{"id": "Organization/o1"}],
        "doctors": doctors,
        "windows": windows,
        "holidays": {
            "national": draw(st.booleans()),
            "start": _hhmm(hol_start),
            "end": _hhmm(hol_end),
        },
        "closures": closures,
        "rotation": rotation,
    }


def _start(cfg: GroupConfig) -> datetime:
    return datetime.combine(YEAR_START, time(0), tzinfo=cfg.tz).astimezone(UTC)


def _in_window_oracle(cfg: GroupConfig, t: datetime) -> bool:
    """Independent check: is ``t`` inside any raw rule interval (no merging, no caching)?"""
    tz = cfg.tz
    local_day = t.astimezone(tz).date()
    for back in range(0, 9):
        day = local_day - timedelta(days=back)
        for rule in cfg.windows:
            if day.weekday() in rule.days:
                s = datetime.combine(day, rule.start, tzinfo=tz)
                e = datetime.combine(day + timedelta(days=rule.end_days_later), rule.end, tzinfo=tz)
                if s <= t < e:
                    return True
        off = cfg.holidays.national and jpholiday.is_holiday(day)
        for c in cfg.closures:
            first = c.first.replace(year=day.year)
            last = c.last.replace(year=day.year)
            if first <= last:
                off = off or first <= day <= last
            else:
                off = off or day >= first or day <= last
        if off:
            h = cfg.holidays
            s = datetime.combine(day, h.start, tzinfo=tz)
            e_day = day + timedelta(days=1) if h.end <= h.start else day
            if s <= t < datetime.combine(e_day, h.end, tzinfo=tz):
                return True
    return False


@st.composite
def overrides(draw: st.DrawFn, doctors: list[str], start: datetime) -> list[Override]:
    out = []
    for i in range(draw(st.integers(0, 8))):
        s = start + timedelta(minutes=draw(st.integers(0, MINUTES_IN_YEAR)))
        e = s + timedelta(minutes=draw(st.integers(1, 3 * 24 * 60)))
        out.append(
            Override(
                id=f"o{i}",
                layer=draw(st.sampled_from(["primary", "backup"])),
                assignee=draw(st.sampled_from(doctors)),
                start=s,
                end=e,
                seq=draw(st.integers(2, 50)),
            )
        )
    return out


instants = st.lists(st.integers(0, MINUTES_IN_YEAR - 1), min_size=5, max_size=15)
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(raw=groups(), minutes=instants, data=st.data())
def test_on_duty_exactly_one_primary_inside_windows_none_outside(
    raw: dict[str, Any], minutes: list[int], data: st.DataObject
) -> None:
    cfg = parse_config(raw)
    start = _start(cfg)
    ovs = data.draw(overrides([d.id for d in cfg.doctors], start))
    roster = Roster([Plan(start, cfg)], ovs)
    for m in minutes:
        t = start + timedelta(minutes=m)
        duty = on_duty(roster, t)
        inside = _in_window_oracle(cfg, t)
        if inside:
            assert duty.primary in cfg.doctor_names
            assert duty.window is not None and t in duty.window
            if cfg.backup is not None:
                assert duty.backup in cfg.doctor_names
        else:
            assert duty.primary is None and duty.backup is None and duty.window is None


@SETTINGS
@given(raw=groups(), minutes=instants, data=st.data())
def test_overrides_win_newest_first(
    raw: dict[str, Any], minutes: list[int], data: st.DataObject
) -> None:
    cfg = parse_config(raw)
    start = _start(cfg)
    ovs = data.draw(overrides([d.id for d in cfg.doctors], start))
    roster = Roster([Plan(start, cfg)], ovs)
    probes = [start + timedelta(minutes=m) for m in minutes]
    probes += [o.start for o in ovs]  # the first minute of every override
    for t in probes:
        duty = on_duty(roster, t)
        if duty.window is None:
            continue
        for layer in ("primary", "backup"):
            covering = [o for o in ovs if o.layer == layer and o.start <= t < o.end]
            if covering:
                winner = max(covering, key=lambda o: o.seq)
                got = duty.primary if layer == "primary" else duty.backup
                # equal seq: either may win, but it is one of them
                best = [o.assignee for o in covering if o.seq == winner.seq]
                assert got in best


@SETTINGS
@given(raw=groups(), minutes=instants, data=st.data())
def test_instant_answer_equals_range_listing(
    raw: dict[str, Any], minutes: list[int], data: st.DataObject
) -> None:
    cfg = parse_config(raw)
    start = _start(cfg)
    ovs = data.draw(overrides([d.id for d in cfg.doctors], start))
    listing_roster = Roster([Plan(start, cfg)], ovs)
    instant_roster = Roster([Plan(start, cfg)], ovs)  # separate: built lazily, other order
    for m in minutes:
        t = start + timedelta(minutes=m)
        duty = on_duty(instant_roster, t)
        around = schedule(listing_roster, t - timedelta(days=2), t + timedelta(days=2))
        hits = [s for s in around if s.start <= t < s.end]
        assert len(hits) <= 1
        if hits:
            assert (duty.primary, duty.backup) == (hits[0].primary, hits[0].backup)
            assert duty.window is not None and duty.window.labels == hits[0].window.labels
        else:
            assert duty.primary is None and duty.window is None


@SETTINGS
@given(raw=groups())
def test_schedule_is_disjoint_sorted_and_inside_windows(raw: dict[str, Any]) -> None:
    cfg = parse_config(raw)
    start = _start(cfg)
    roster = Roster([Plan(start, cfg)])
    segs = schedule(roster, start, start + timedelta(days=60))
    for a, b in itertools.pairwise(segs):
        assert a.end <= b.start
    for s in segs:
        assert s.start < s.end
        assert s.window.start <= s.start and s.end <= s.window.end
        assert _in_window_oracle(cfg, s.start)
        assert _in_window_oracle(cfg, s.end - timedelta(seconds=1))


def test_tokyo_has_no_dst_and_other_zones_work() -> None:
    tokyo = ZoneInfo("Asia/Tokyo")
    offsets = {datetime(2026, m, 1, tzinfo=tokyo).utcoffset() for m in range(1, 13)}
    assert offsets == {timedelta(hours=9)}
