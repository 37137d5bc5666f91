"""Japanese national holidays 2026-2027 (incl. 振替休日, 国民の休日) and group closures."""

from __future__ import annotations

from datetime import date

from renkei.roster.config import parse_config
from renkei.roster.holidays import day_off_reasons, days_off, national_holidays
from tests.rosterdata import CLINICS, group_dict


def test_national_holidays_2026_substitute_and_citizens_holiday() -> None:
    days = national_holidays(2026)
    # 5/3 (Sun) 憲法記念日 -> 5/6 (Wed) 振替休日
    assert date(2026, 5, 3).weekday() == 6
    assert "振替休日" in days[date(2026, 5, 6)]
    # 9/21 敬老の日 and 9/23 秋分の日 squeeze 9/22 into 国民の休日
    assert days[date(2026, 9, 22)] == "国民の休日"
    assert days[date(2026, 1, 12)] == "成人の日"
    assert date(2026, 5, 7) not in days
    assert len(days) == 18


def test_national_holidays_2027_substitute_for_sunday_equinox() -> None:
    days = national_holidays(2027)
    assert days[date(2027, 3, 21)] == "春分の日"
    assert date(2027, 3, 21).weekday() == 6
    assert "振替休日" in days[date(2027, 3, 22)]
    assert date(2027, 9, 22) not in days  # no 国民の休日 in 2027
    assert days[date(2027, 9, 20)] == "敬老の日"


def test_days_off_year_end_closure_spans_new_year() -> None:
    cfg = parse_config(group_dict())
    off_2026 = days_off(cfg, 2026)
    off_2027 = days_off(cfg, 2027)
    for d in (29, 30, 31):
        assert off_2026[date(2026, 12, d)] == ["休診: 年末年始"]
    assert off_2027[date(2027, 1, 1)] == ["祝日: 元日", "休診: 年末年始"]
    assert off_2027[date(2027, 1, 3)] == ["休診: 年末年始"]
    assert date(2027, 1, 4) not in off_2027
    assert date(2026, 12, 28) not in off_2026


def test_day_off_reasons_clinic_specific_closure() -> None:
    cfg = parse_config(
        group_dict(
            closures=[
                {
                    "name": "夏季休診",
                    "from": "2026-08-13",
                    "to": "2026-08-16",
                    "clinics": [CLINICS[0]],
                }
            ]
        )
    )
    assert day_off_reasons(cfg, date(2026, 8, 14), CLINICS[0]) == ["休診: 夏季休診"]
    assert day_off_reasons(cfg, date(2026, 8, 14), CLINICS[1]) == []
    # the group still covers: the closed clinic's patients need the duty doctor
    assert day_off_reasons(cfg, date(2026, 8, 14)) == ["休診: 夏季休診"]


def test_days_off_without_national_holidays() -> None:
    cfg = parse_config(group_dict(holidays={"national": False}, closures=[]))
    assert days_off(cfg, 2026) == {}
